//! Any text a client sends as a WebSocket frame: the parser answers with a
//! request or a refusal, never a panic.

#![no_main]

use std::sync::LazyLock;

use chat_node::Config;
use chat_node::protocol::client::{Limits, parse};
use libfuzzer_sys::fuzz_target;

/// The limits a node runs with by default.
static LIMITS: LazyLock<Limits> = LazyLock::new(|| Limits {
    max_body_bytes: Config::defaults().max_body_bytes as usize,
    max_group_members: Config::defaults().max_group_members as usize,
});

fuzz_target!(|data: &[u8]| {
    // Text frames are UTF-8 (the WebSocket layer refuses others), and only
    // text frames reach the parser.
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = parse(text, &LIMITS);
    }
});
