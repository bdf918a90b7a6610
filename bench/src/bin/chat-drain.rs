//! The drain measurement binary: parse flags, run, print and save the report.

use clap::Parser;

use chat_bench::drain::{DrainArgs, run_drain};
use chat_bench::finish;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = DrainArgs::parse();
    let json = args.json.clone();
    finish("chat-drain", run_drain(args).await, json)
}
