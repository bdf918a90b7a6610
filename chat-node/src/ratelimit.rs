//! Per-connection frame rate limit: a token bucket (`rate` per second,
//! `burst` deep), plus the rule that a connection refused `burst` frames in
//! a row is abusing it and gets closed (4003).

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
    refused_in_a_row: u32,
    max_refused: u32,
}

impl RateLimit {
    pub fn new(rate_per_s: u32, burst: u32, now: Instant) -> Self {
        RateLimit {
            rate: f64::from(rate_per_s),
            burst: f64::from(burst),
            tokens: f64::from(burst),
            last: now,
            refused_in_a_row: 0,
            max_refused: burst,
        }
    }

    /// Accounts for one frame arriving at `now`.
    pub fn check(&mut self, now: Instant) -> Verdict {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            self.refused_in_a_row = 0;
            return Verdict::Allow;
        }
        self.refused_in_a_row += 1;
        if self.refused_in_a_row >= self.max_refused {
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
    fn an_allowed_frame_forgives_earlier_refusals() {
        let t0 = Instant::now();
        let mut r = RateLimit::new(10, 3, t0);
        for _ in 0..3 {
            r.check(t0);
        }
        assert_eq!(r.check(t0), Verdict::Refuse);
        assert_eq!(r.check(t0), Verdict::Refuse);
        assert_eq!(r.check(t0 + Duration::from_millis(100)), Verdict::Allow);
        assert_eq!(r.check(t0 + Duration::from_millis(100)), Verdict::Refuse);
    }
}
