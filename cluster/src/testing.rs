//! Test support shared by the crates' tests (chat-node's, the operator's,
//! the system tests'): nothing a node or the operator calls.

use std::sync::atomic::{AtomicU16, Ordering};

/// Ports below the kernel's ephemeral range (32768 and up on Linux), which
/// a `bind` to port 0 never hands out, so a port picked here is not taken
/// by another test's listener between this check and the child's own bind
/// (a port 0 pick was: it failed a cluster test with "Address already in
/// use" under the full suite).
const FIRST: u16 = 20_000;
const LAST: u16 = 32_000;

/// A port free on 127.0.0.1 now, for a child process to listen on: each
/// call in a process takes the next port of the range from a random start
/// (so parallel test processes rarely meet), skipping ports in use.
pub fn free_port() -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let span = LAST - FIRST;
    let _ = NEXT.compare_exchange(
        0,
        1 + rand_offset(span),
        Ordering::AcqRel,
        Ordering::Acquire,
    );
    for _ in 0..span {
        let port = FIRST + NEXT.fetch_add(1, Ordering::AcqRel) % span;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {FIRST}..{LAST}");
}

/// A start in `0..span` that differs between processes.
fn rand_offset(span: u16) -> u16 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    ((nanos ^ std::process::id().wrapping_mul(2_654_435_761)) % u32::from(span)) as u16
}

#[cfg(test)]
mod tests {
    #[test]
    fn ports_are_outside_the_ephemeral_range_free_and_not_repeated() {
        let a = super::free_port();
        let b = super::free_port();
        assert_ne!(a, b);
        for p in [a, b] {
            assert!((super::FIRST..super::LAST).contains(&p));
            std::net::TcpListener::bind(("127.0.0.1", p)).expect("free");
        }
    }
}
