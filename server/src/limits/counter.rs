//! The counters behind every rate limit, in this process and, with several instances, in Redis.
//!
//! Two kinds:
//! - a **rate** ([`Rate`]): each attempt takes a cell, and an attempt with none left is refused.
//!   Locally governor's keyed GCRA (`max` at once, then one back every `window / max`).
//! - a **failure count** ([`Failures`]): looked at before the costly work (is this key locked?)
//!   and counted after it, only when it failed. governor only answers by taking a cell, so this
//!   is a fixed window: `max` failures within `window` of the first lock the key until the window
//!   ends. It is the same algorithm Redis runs, so a fallback to the local counter behaves like
//!   the cluster's.
//!
//! With Redis every counter is one key, `pychat:limit:<rule>:<key>`, counted with INCR and given
//! its expiry at the first count, in one script (atomic: two instances never both take the last
//! cell). Redis is asked only while the bus says it is healthy and for at most
//! [`REDIS_TIMEOUT`]; otherwise, or when it fails, the local counter answers: a limit is never a
//! reason for a request to fail or wait. While Redis is away each instance counts on its own.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

use governor::clock::Clock;
use governor::{DefaultKeyedRateLimiter, Quota};

use crate::bus::RedisBus;

/// The longest a limit check waits for Redis before the local counter answers.
const REDIS_TIMEOUT: Duration = Duration::from_millis(250);

/// Operations between two sweeps of expired local entries.
const SWEEP_EVERY: u64 = 4096;

/// `max` per `window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    pub max: u32,
    pub window: Duration,
}

/// The answer to an attempt that is over a limit: when to try again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exceeded {
    pub retry_after: Duration,
}

/// Counts `{n, ttl_ms}` of a window key: INCR, and the expiry at the first count (or if a key
/// somehow lost it, so no key lives forever).
static COUNT_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
local n = redis.call('INCR', KEYS[1])
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  ttl = tonumber(ARGV[1])
end
return {n, ttl}
",
    )
});

/// The count and remaining lifetime of a window key, without counting.
static PEEK_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
local n = tonumber(redis.call('GET', KEYS[1]) or '0')
return {n, redis.call('PTTL', KEYS[1])}
",
    )
});

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

/// A Redis connection of the bus, while the bus is healthy.
#[derive(Clone, Default)]
pub struct Shared {
    redis: Option<RedisBus>,
}

impl Shared {
    pub fn new(redis: Option<RedisBus>) -> Self {
        Self { redis }
    }

    /// Runs `script` on `key`; `None` when Redis is not configured, not healthy, slow or failing.
    async fn window(
        &self,
        script: &redis::Script,
        key: &str,
        window: Duration,
    ) -> Option<(u64, Duration)> {
        let redis = self.redis.as_ref().filter(|r| r.is_healthy())?;
        let mut conn = redis.commands();
        let mut invocation = script.key(key);
        invocation.arg(millis(window));
        let call = async {
            let answer: redis::RedisResult<(i64, i64)> = invocation.invoke_async(&mut conn).await;
            answer
        };
        match tokio::time::timeout(REDIS_TIMEOUT, call).await {
            Ok(Ok((n, ttl))) => Some((
                u64::try_from(n).unwrap_or(0),
                // -2: no such key (a peek at nothing); -1 cannot follow the scripts.
                Duration::from_millis(u64::try_from(ttl).unwrap_or(0)),
            )),
            Ok(Err(err)) => {
                tracing::debug!(error = %err, "redis limit counter failed; counting locally");
                None
            }
            Err(_) => {
                tracing::debug!("redis limit counter timed out; counting locally");
                None
            }
        }
    }

    /// Deletes `key` if Redis answers in time; a key left behind expires with its window.
    async fn delete(&self, key: &str) {
        let Some(redis) = self.redis.as_ref().filter(|r| r.is_healthy()) else {
            return;
        };
        let mut conn = redis.commands();
        let call = async {
            let deleted: redis::RedisResult<()> =
                redis::cmd("DEL").arg(key).query_async(&mut conn).await;
            deleted
        };
        if !matches!(tokio::time::timeout(REDIS_TIMEOUT, call).await, Ok(Ok(()))) {
            tracing::debug!("redis limit counter not cleared; it expires with its window");
        }
    }
}

fn redis_key(name: &str, key: &str) -> String {
    format!("pychat:limit:{name}:{key}")
}

/// Attempts per key: each one takes a cell.
pub struct Rate {
    name: &'static str,
    rule: Rule,
    local: DefaultKeyedRateLimiter<String>,
    ops: AtomicU64,
}

impl Rate {
    pub fn new(name: &'static str, rule: Rule) -> Self {
        let max = NonZeroU32::new(rule.max).unwrap_or(NonZeroU32::MIN);
        // One cell back every window/max: `max` per window sustained, `max` at once.
        let period = (rule.window / max.get()).max(Duration::from_nanos(1));
        let quota = Quota::with_period(period)
            .unwrap_or_else(|| Quota::per_second(max))
            .allow_burst(max);
        Self {
            name,
            rule,
            local: DefaultKeyedRateLimiter::keyed(quota),
            ops: AtomicU64::new(0),
        }
    }

    /// Takes a cell for `key`, or says when one will be there.
    pub async fn hit(&self, shared: &Shared, key: &str) -> Result<(), Exceeded> {
        let counted = shared
            .window(&COUNT_SCRIPT, &redis_key(self.name, key), self.rule.window)
            .await;
        if let Some((n, ttl)) = counted {
            return if n <= u64::from(self.rule.max) {
                Ok(())
            } else {
                Err(Exceeded { retry_after: ttl })
            };
        }
        if self.ops.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            self.local.retain_recent();
        }
        self.local
            .check_key(&key.to_string())
            .map_err(|not_until| Exceeded {
                retry_after: not_until.wait_time_from(self.local.clock().now()),
            })
    }
}

/// Failures per key within a window: a key with `max` of them is locked until its window ends.
pub struct Failures {
    name: &'static str,
    rule: Rule,
    /// Count and the window's end, per key.
    local: Mutex<HashMap<String, (u32, Instant)>>,
    ops: AtomicU64,
}

impl Failures {
    pub fn new(name: &'static str, rule: Rule) -> Self {
        Self {
            name,
            rule,
            local: Mutex::default(),
            ops: AtomicU64::new(0),
        }
    }

    fn with_local<T>(
        &self,
        f: impl FnOnce(&mut HashMap<String, (u32, Instant)>, Instant) -> T,
    ) -> T {
        let now = Instant::now();
        let mut local = self.local.lock().unwrap_or_else(|e| e.into_inner());
        if self.ops.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            local.retain(|_, (_, ends)| *ends > now);
        }
        f(&mut local, now)
    }

    /// Refused while `key` has had `max` failures in its window.
    pub async fn check(&self, shared: &Shared, key: &str) -> Result<(), Exceeded> {
        let max = u64::from(self.rule.max);
        let peeked = shared
            .window(&PEEK_SCRIPT, &redis_key(self.name, key), self.rule.window)
            .await;
        let (count, retry_after) = match peeked {
            Some(answer) => answer,
            None => self.with_local(|local, now| match local.get(key) {
                Some((n, ends)) if *ends > now => (u64::from(*n), *ends - now),
                _ => (0, Duration::ZERO),
            }),
        };
        if count >= max {
            Err(Exceeded { retry_after })
        } else {
            Ok(())
        }
    }

    /// Counts one failure for `key`.
    pub async fn fail(&self, shared: &Shared, key: &str) {
        let counted = shared
            .window(&COUNT_SCRIPT, &redis_key(self.name, key), self.rule.window)
            .await;
        if counted.is_some() {
            return;
        }
        let window = self.rule.window;
        self.with_local(|local, now| {
            let entry = local.entry(key.to_string()).or_insert((0, now + window));
            if entry.1 <= now {
                *entry = (0, now + window);
            }
            entry.0 = entry.0.saturating_add(1);
        });
    }

    /// Forgets `key`'s failures.
    pub async fn clear(&self, shared: &Shared, key: &str) {
        shared.delete(&redis_key(self.name, key)).await;
        self.with_local(|local, _| local.remove(key));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_rate_refuses_past_its_burst_and_says_when() {
        let rate = Rate::new(
            "t",
            Rule {
                max: 3,
                window: Duration::from_secs(60),
            },
        );
        let shared = Shared::default();
        for _ in 0..3 {
            assert!(rate.hit(&shared, "a").await.is_ok());
        }
        let refused = rate
            .hit(&shared, "a")
            .await
            .expect_err("fourth in a minute");
        // One cell comes back every 20 s.
        assert!(refused.retry_after > Duration::from_secs(15));
        assert!(refused.retry_after <= Duration::from_secs(20));
        assert!(
            rate.hit(&shared, "b").await.is_ok(),
            "keys are counted apart"
        );
    }

    #[tokio::test]
    async fn failures_lock_a_key_until_its_window_ends() {
        let failures = Failures::new(
            "t",
            Rule {
                max: 2,
                window: Duration::from_millis(200),
            },
        );
        let shared = Shared::default();
        failures.fail(&shared, "a").await;
        assert!(failures.check(&shared, "a").await.is_ok());
        failures.fail(&shared, "a").await;
        let locked = failures
            .check(&shared, "a")
            .await
            .expect_err("two failures");
        assert!(locked.retry_after <= Duration::from_millis(200));
        assert!(failures.check(&shared, "b").await.is_ok());
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert!(
            failures.check(&shared, "a").await.is_ok(),
            "the window ended"
        );
        failures.fail(&shared, "a").await;
        failures.fail(&shared, "a").await;
        failures.clear(&shared, "a").await;
        assert!(failures.check(&shared, "a").await.is_ok(), "cleared");
    }
}
