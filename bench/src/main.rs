//! The load generator binary: parse flags, run, print and save the report.

use clap::Parser;

use chat_bench::{Args, run};

/// mimalloc, as in chat-node: the generator's frame path allocates a lot of
/// small, short-lived buffers too, and it shares the machine with the nodes
/// it measures (see docs/bench/README.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let json = args.json.clone();
    match run(args).await {
        Ok(report) => {
            let text = serde_json::to_string_pretty(&report).unwrap_or_default();
            println!("{text}");
            if let Some(path) = json
                && let Err(e) = std::fs::write(&path, &text)
            {
                eprintln!("chat-bench: cannot write {}: {e}", path.display());
                return std::process::ExitCode::FAILURE;
            }
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("chat-bench: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
