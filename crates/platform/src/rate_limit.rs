//! Token buckets per API key and per tenant: a caller may spend `burst`
//! requests at once and `per_second` steadily after that; beyond it, a
//! call is RESOURCE_EXHAUSTED (`RATE_LIMITED`, with `RetryInfo`) and does
//! nothing. Buckets live in each process: a deployment of N replicas
//! behind a balancer admits up to N times the rate.

use std::collections::HashMap;
use std::sync::Mutex;

use switchboard_core::Error;

/// One bucket's settings; `per_second` 0 means no limit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    pub per_second: u32,
    pub burst: u32,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    last_ms: i64,
}

/// Buckets of one kind (per key, or per tenant), by name.
#[derive(Debug)]
pub struct TokenBuckets {
    /// Tokens added per millisecond; 0 means no limit.
    per_ms: f64,
    burst: u32,
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl TokenBuckets {
    pub fn new(rate: Rate) -> TokenBuckets {
        TokenBuckets {
            per_ms: f64::from(rate.per_second) / 1000.0,
            burst: rate.burst,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// `count` a minute, in bursts of `burst`; 0 means no limit.
    pub fn per_minute(count: u32, burst: u32) -> TokenBuckets {
        TokenBuckets { per_ms: f64::from(count) / 60_000.0, burst, buckets: Mutex::new(HashMap::new()) }
    }

    /// Takes one token of `name`'s bucket at `now_ms`; the refusal names
    /// `what` is limited.
    pub fn take(&self, name: &str, now_ms: i64, what: &str) -> Result<(), Error> {
        if self.per_ms <= 0.0 {
            return Ok(());
        }
        let burst = f64::from(self.burst.max(1));
        let mut buckets = switchboard_core::sync::lock_unpoisoned(&self.buckets);
        let bucket = buckets.entry(name.to_owned()).or_insert(Bucket { tokens: burst, last_ms: now_ms });
        let elapsed_ms = (now_ms - bucket.last_ms).max(0);
        // Precision loss is immaterial: elapsed times are milliseconds.
        #[allow(clippy::cast_precision_loss)]
        let refill = elapsed_ms as f64 * self.per_ms;
        bucket.tokens = (bucket.tokens + refill).min(burst);
        bucket.last_ms = now_ms;
        if bucket.tokens < 1.0 {
            return Err(Error::resource_exhausted(format!(
                "{what} is over its rate limit (bursts of {}): retry later",
                self.burst
            ))
            .with_reason("RATE_LIMITED"));
        }
        bucket.tokens -= 1.0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_is_admitted_then_the_steady_rate() {
        let buckets = TokenBuckets::new(Rate { per_second: 10, burst: 3 });
        for _ in 0..3 {
            buckets.take("k", 0, "key").expect("within the burst");
        }
        let refused = buckets.take("k", 0, "key").expect_err("the burst is spent");
        assert_eq!(refused.code, switchboard_core::ErrorCode::ResourceExhausted);
        assert_eq!(refused.explicit_reason, Some("RATE_LIMITED"));
        buckets.take("other", 0, "key").expect("another key has its own bucket");
        assert!(buckets.take("k", 50, "key").is_err(), "half a token after 50 ms");
        buckets.take("k", 100, "key").expect("one token after 100 ms at 10/s");
        buckets.take("k", 10_000, "key").expect("refilled");
        for _ in 0..2 {
            buckets.take("k", 10_000, "key").expect("up to the burst again");
        }
        assert!(buckets.take("k", 10_000, "key").is_err(), "never more than the burst");
    }

    #[test]
    fn a_zero_rate_is_no_limit() {
        let buckets = TokenBuckets::new(Rate { per_second: 0, burst: 0 });
        for _ in 0..10_000 {
            buckets.take("k", 0, "key").expect("unlimited");
        }
    }
}
