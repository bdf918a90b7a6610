//! Any bytes a node consumes from its bus queue: decoded or refused, never a
//! panic, and what decodes survives a round trip.

#![no_main]

use libfuzzer_sys::fuzz_target;
use parley_protocol::bus::Envelope;

fuzz_target!(|data: &[u8]| {
    // As a node reads what it consumes.
    if let Ok(envelope) = Envelope::decode(data) {
        let again = serde_json::to_vec(&envelope).map(|b| Envelope::decode(&b));
        assert!(
            matches!(&again, Ok(Ok(e)) if *e == envelope),
            "round trip changed {envelope:?} into {again:?}"
        );
    }
});
