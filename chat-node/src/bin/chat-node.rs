//! The chat-node binary: parse flags, set up logging, run the library.

use clap::Parser;
use tracing_subscriber::EnvFilter;

use chat_node::{Config, Server};

/// mimalloc: the message path allocates a lot of small, short-lived
/// buffers, and glibc malloc spent a fifth of the node's CPU on them
/// (profiled under load; see docs/bench/README.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    let cfg = Config::parse();
    match run(cfg).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "chat-node failed");
            eprintln!("chat-node: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cfg: Config) -> Result<(), chat_node::Error> {
    let server = Server::bind(cfg).await?;
    let addr = server.local_addr();
    if server.generated_admin_token {
        let port = addr.port();
        let admin = server.admin_token();
        println!("admin token (random, set CHAT_ADMIN_TOKEN to choose one): {admin}");
        println!("get a user token:");
        println!(
            "  curl -s -X POST -H 'Authorization: Bearer {admin}' -d '{{\"user\":\"alice\",\"platform\":\"web\"}}' http://127.0.0.1:{port}/v1/tokens"
        );
        println!(
            "then connect a WebSocket to ws://127.0.0.1:{port}/ws and send {{\"type\":\"connect\",\"token\":\"<token>\"}}"
        );
        // The admin token rides in the fragment, which a browser never
        // sends: the page reads it and mints user tokens with it.
        println!(
            "or open the web client, with a dev sign-in: http://127.0.0.1:{port}/#admin={admin}"
        );
    }
    server.run(chat_node::shutdown::os_signal()).await
}
