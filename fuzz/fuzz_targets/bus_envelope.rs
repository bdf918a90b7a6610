//! Any bytes a node consumes from its bus queue: decoded or refused, never a
//! panic, and what decodes survives a round trip.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    chat_node::fuzz_bus_envelope(data);
});
