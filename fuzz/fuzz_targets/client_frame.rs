//! Any text a client sends as a WebSocket frame: the parser, with a node's
//! default limits, answers with a request or a refusal, never a panic.

#![no_main]

use libfuzzer_sys::fuzz_target;
use parley_protocol::client::{Limits, parse};

fuzz_target!(|data: &[u8]| {
    // Text frames are UTF-8 (the WebSocket layer refuses others), and only
    // text frames reach the parser.
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = parse(text, &Limits::DEFAULT);
    }
});
