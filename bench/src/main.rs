//! The load generator binary: parse flags, run, print and save the report.

use clap::Parser;

use chat_bench::{Args, finish, run};

/// mimalloc, as in chat-node: the generator's frame path allocates a lot of
/// small, short-lived buffers too, and it shares the machine with the nodes
/// it measures (see docs/bench/README.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// One thread: the traffic loop paces its wake-ups (`--tick-us`),
/// and a second worker would only add wake-ups between the two.
#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let json = args.json.clone();
    finish("chat-bench", run(args).await, json)
}
