//! Per-connection rate limit on what frames cost: a token bucket (`rate`
//! per second, `burst` deep), where a frame takes tokens by its cost (a
//! `sync` of 1000 entries costs more than a `ping`), plus the rule that a
//! connection whose refusals keep coming faster than half the rate is
//! abusing it and gets closed (4003): refusals add to a debt that drains at
//! half the rate, and a debt of `burst` closes. Allowed frames in between
//! do not wipe the debt, so 99 refused frames per allowed one still close.

use std::time::Instant;

/// What to do with one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    /// Refuse it with `rate_limited`; the connection stays.
    Refuse,
    /// Close the connection (4003).
    Close,
}

/// A token bucket for one connection.
#[derive(Debug)]
pub struct RateLimit {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
    /// Refusals not yet forgiven (drains at half the rate).
    debt: f64,
}

impl RateLimit {
    pub fn new(rate_per_s: u32, burst: u32, now: Instant) -> Self {
        RateLimit {
            rate: f64::from(rate_per_s),
            burst: f64::from(burst),
            tokens: f64::from(burst),
            last: now,
            debt: 0.0,
        }
    }

    /// Accounts for one frame of cost 1 arriving at `now`.
    pub fn check(&mut self, now: Instant) -> Verdict {
        self.check_cost(now, 1)
    }

    /// Accounts for one frame of `cost` tokens (at most `burst`, so any
    /// frame can pass once the bucket is full) arriving at `now`.
    pub fn check_cost(&mut self, now: Instant, cost: u32) -> Verdict {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.debt = (self.debt - elapsed * self.rate / 2.0).max(0.0);
        let cost = f64::from(cost.max(1)).min(self.burst);
        if self.tokens >= cost {
            self.tokens -= cost;
            return Verdict::Allow;
        }
        self.debt += 1.0;
        if self.debt >= self.burst {
            Verdict::Close
        } else {
            Verdict::Refuse
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn burst_then_sustained_rate() {
        let t0 = Instant::now();
        let mut r = RateLimit::new(50, 100, t0);
        for _ in 0..100 {
            assert_eq!(r.check(t0), Verdict::Allow);
        }
        assert_eq!(r.check(t0), Verdict::Refuse);
        // 20 ms later one token (50/s) has come back
        assert_eq!(r.check(t0 + Duration::from_millis(20)), Verdict::Allow);
        assert_eq!(r.check(t0 + Duration::from_millis(20)), Verdict::Refuse);
    }

    #[test]
    fn persistent_abuse_closes() {
        let t0 = Instant::now();
        let mut r = RateLimit::new(10, 5, t0);
        let verdicts: Vec<_> = (0..10).map(|_| r.check(t0)).collect();
        assert_eq!(&verdicts[..5], &[Verdict::Allow; 5]);
        assert_eq!(&verdicts[5..9], &[Verdict::Refuse; 4]);
        assert_eq!(verdicts[9], Verdict::Close);
    }

    #[test]
    fn refusals_are_forgiven_only_with_time() {
        let t0 = Instant::now();
        let mut r = RateLimit::new(10, 3, t0);
        for _ in 0..3 {
            r.check(t0);
        }
        assert_eq!(r.check(t0), Verdict::Refuse);
        assert_eq!(r.check(t0), Verdict::Refuse);
        // 100 ms: one token back, half a refusal forgiven (debt 1.5); the
        // allowed frame forgives nothing more, so one more refusal leaves a
        // debt of 2.5 and the next one reaches the burst of 3.
        let t1 = t0 + Duration::from_millis(100);
        assert_eq!(r.check(t1), Verdict::Allow);
        assert_eq!(r.check(t1), Verdict::Refuse);
        assert_eq!(r.check(t1), Verdict::Close);
        // A client that slows down to the rate is forgiven entirely.
        let mut r = RateLimit::new(10, 3, t0);
        for _ in 0..5 {
            r.check(t0);
        }
        let later = t0 + Duration::from_secs(2);
        assert_eq!(r.check(later), Verdict::Allow);
        assert_eq!(r.debt, 0.0);
    }

    #[test]
    fn many_refusals_per_allowed_frame_still_close() {
        // 99 refused frames for every allowed one never reset the count.
        let t0 = Instant::now();
        let mut r = RateLimit::new(50, 100, t0);
        let mut closed = false;
        for i in 0..100_000u32 {
            let now = t0 + Duration::from_millis(u64::from(i) / 5); // 5000 frames/s
            if r.check(now) == Verdict::Close {
                closed = true;
                break;
            }
        }
        assert!(closed);
    }

    #[test]
    fn costly_frames_take_more_tokens() {
        let t0 = Instant::now();
        let mut r = RateLimit::new(50, 100, t0);
        assert_eq!(r.check_cost(t0, 60), Verdict::Allow);
        assert_eq!(r.check_cost(t0, 60), Verdict::Refuse);
        assert_eq!(r.check_cost(t0, 40), Verdict::Allow);
        // A cost above the burst is capped: it passes with a full bucket.
        let mut r = RateLimit::new(50, 10, t0);
        assert_eq!(r.check_cost(t0, 1_000), Verdict::Allow);
    }
}
