//! The drain measurement binary: parse flags, run, print and save the report.

use clap::Parser;

use chat_bench::drain::{DrainArgs, run_drain};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = DrainArgs::parse();
    let json = args.json.clone();
    match run_drain(args).await {
        Ok(report) => {
            let text = serde_json::to_string_pretty(&report).unwrap_or_default();
            println!("{text}");
            if let Some(path) = json
                && let Err(e) = std::fs::write(&path, &text)
            {
                eprintln!("chat-drain: cannot write {}: {e}", path.display());
                return std::process::ExitCode::FAILURE;
            }
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("chat-drain: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
