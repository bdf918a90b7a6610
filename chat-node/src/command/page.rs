//! Pages cut to a byte budget. `sync` and `history` take a count from the
//! client, but what a connection can carry is bytes: 1000 ordinary inbox
//! entries, or a few dozen messages of control characters (six bytes each
//! once JSON-escaped), make a reply larger than any sane frame. A page
//! keeps as many items as fit in `max_reply_bytes` and says `more: true`
//! for the rest; the client pages on from the last item it got.

use serde::Serialize;

use crate::protocol::json_len;

/// Room for the rest of the reply around the items (`type`, `more`, `pts`,
/// `with`, `rid`: each bounded by the protocol).
const FRAME_OVERHEAD: usize = 512;

/// How many items, taken in `order`, fit in `budget` bytes (items joined
/// by commas); always at least one, since one item is bounded by the
/// protocol's body and URL limits, well below the smallest budget.
fn fitting<'a, T: Serialize + 'a>(order: impl Iterator<Item = &'a T>, budget: usize) -> usize {
    fitting_sizes(order.map(|item| json_len(item) + 1), budget)
}

/// How many `"key":count` entries of a JSON object, taken in `order`, fit
/// in `budget` bytes (the keys are ids, which need no escaping); at least
/// one, like [`fitting`].
pub fn fitting_entries<'a>(order: impl Iterator<Item = (&'a String, u64)>, budget: usize) -> usize {
    fitting_sizes(
        order.map(|(key, count)| {
            let digits = count.checked_ilog10().unwrap_or(0) as usize + 1;
            json_len(key) + 2 + digits
        }),
        budget,
    )
}

/// How many of these sizes (each with its separator) fit in `budget` less
/// the frame's overhead; always at least one.
fn fitting_sizes(sizes: impl Iterator<Item = usize>, budget: usize) -> usize {
    let budget = budget.saturating_sub(FRAME_OVERHEAD);
    let mut used: usize = 0;
    let mut n = 0;
    for size in sizes {
        used = used.saturating_add(size);
        if used > budget && n > 0 {
            break;
        }
        n += 1;
    }
    n
}

/// Keeps the oldest items that fit (a `sync` page: the client goes on
/// after the last one). Returns whether any were cut.
pub fn keep_first<T: Serialize>(items: &mut Vec<T>, budget: usize) -> bool {
    let n = fitting(items.iter(), budget);
    let cut = n < items.len();
    items.truncate(n);
    cut
}

/// Keeps the newest items that fit (a `history` page: the client goes on
/// before the first one). Returns whether any were cut.
pub fn keep_last<T: Serialize>(items: &mut Vec<T>, budget: usize) -> bool {
    let n = fitting(items.iter().rev(), budget);
    let cut = n < items.len();
    items.drain(..items.len() - n);
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items(n: usize, len: usize) -> Vec<String> {
        (0..n).map(|i| format!("{i:0>len$}")).collect()
    }

    #[test]
    fn pages_stay_within_the_budget() {
        // Each item is 102 bytes as JSON (quotes), plus a comma.
        let budget = FRAME_OVERHEAD + 103 * 10;
        let mut v = items(25, 100);
        assert!(keep_first(&mut v, budget));
        assert_eq!(v.len(), 10);
        assert!(v[0].ends_with('0') && v[9].ends_with('9'));
        let mut v = items(25, 100);
        assert!(keep_last(&mut v, budget));
        assert_eq!(v.len(), 10);
        assert!(v[0].ends_with("15") && v[9].ends_with("24"));
    }

    #[test]
    fn a_page_that_fits_is_left_alone() {
        let mut v = items(5, 10);
        assert!(!keep_first(&mut v, 64 * 1024));
        assert_eq!(v.len(), 5);
        assert!(!keep_last(&mut v, 64 * 1024));
        let mut empty: Vec<String> = vec![];
        assert!(!keep_first(&mut empty, 0));
    }

    #[test]
    fn one_item_always_goes_out() {
        let mut v = items(3, 10_000);
        assert!(keep_first(&mut v, 100));
        assert_eq!(v.len(), 1);
    }

    #[test]
    fn escaped_bytes_count() {
        // A control character is one byte in Rust and six in JSON.
        assert_eq!(json_len(&"\u{1}".repeat(10)), 62);
    }
}
