//! How long to wait between the attempts of one call.
//!
//! Capped exponential backoff with jitter: the n-th pause is drawn from
//! `[c/2, c]` where `c = min(backoff_max, backoff_initial × 2ⁿ)`. The fixed
//! half keeps pauses growing (callers that failed together do not all come
//! back at once and stay together); the random half spreads them. A pause
//! that would end at or after the call's deadline is not taken: the call
//! ends with `DEADLINE_EXCEEDED` instead of sleeping into it.

use std::time::Duration;

/// Retry settings of a client (all calls share them; the deadline is per
/// call).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// First pause. Default 20 ms: about one Raft round trip on a LAN, so
    /// a proposal lost to a leader change is retried about when the new
    /// leader can take it.
    pub backoff_initial: Duration,
    /// Longest pause. Default 500 ms: about one election timeout (300–600
    /// ms), the longest a shard is normally without a leader.
    pub backoff_max: Duration,
    /// Attempts per call at most, the first included (1 turns retries
    /// off). Default 100: the deadline ends a call first unless the
    /// deadline is long.
    pub attempts_max: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            backoff_initial: Duration::from_millis(20),
            backoff_max: Duration::from_millis(500),
            attempts_max: 100,
        }
    }
}

/// The pauses of one call.
#[derive(Debug)]
pub(crate) struct Backoff {
    policy: RetryPolicy,
    /// Pauses handed out so far.
    pauses: u32,
    rng: fastrand::Rng,
}

impl Backoff {
    /// Pauses for one call, jittered from `rng`.
    pub fn new(policy: RetryPolicy, rng: fastrand::Rng) -> Backoff {
        Backoff {
            policy,
            pauses: 0,
            rng,
        }
    }

    /// The ceiling of the next pause: `backoff_initial × 2ⁿ`, capped.
    fn ceiling(&self) -> Duration {
        let factor = 1u32 << self.pauses.min(20);
        self.policy
            .backoff_initial
            .saturating_mul(factor)
            .min(self.policy.backoff_max)
    }

    /// The pause before the next attempt, given the time `remaining` until
    /// the call's deadline; `None` if the pause would reach the deadline
    /// (then no attempt is left worth making).
    pub fn next_pause(&mut self, remaining: Duration) -> Option<Duration> {
        let ceiling = self.ceiling();
        self.pauses = self.pauses.saturating_add(1);
        let half = ceiling / 2;
        let span_us = (ceiling - half).as_micros() as u64;
        let pause = half + Duration::from_micros(self.rng.u64(0..=span_us));
        (pause < remaining).then_some(pause)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Simulated time: each attempt takes `attempt` (cut short at the
    /// deadline, as the client's attempt timeout is), then the backoff
    /// pauses, until it gives up. Returns the pauses and the time spent.
    fn run(
        policy: RetryPolicy,
        deadline: Duration,
        attempt: Duration,
        seed: u64,
    ) -> (Vec<Duration>, Duration) {
        let mut b = Backoff::new(policy, fastrand::Rng::with_seed(seed));
        let mut elapsed = Duration::ZERO;
        let mut pauses = Vec::new();
        loop {
            elapsed += attempt.min(deadline.saturating_sub(elapsed));
            match b.next_pause(deadline.saturating_sub(elapsed)) {
                Some(p) => {
                    pauses.push(p);
                    elapsed += p;
                }
                None => break,
            }
            assert!(pauses.len() < 10_000, "the backoff never ends");
        }
        (pauses, elapsed)
    }

    #[test]
    fn pauses_never_reach_the_deadline() {
        let policy = RetryPolicy::default();
        for seed in 0..200 {
            for deadline_ms in [0, 1, 15, 50, 300, 1_000, 5_000, 10_000] {
                let deadline = Duration::from_millis(deadline_ms);
                for attempt_ms in [0, 1, 7, 400] {
                    let attempt = Duration::from_millis(attempt_ms);
                    let (pauses, elapsed) = run(policy, deadline, attempt, seed);
                    assert!(
                        elapsed <= deadline,
                        "seed {seed}: {elapsed:?} spent, deadline {deadline:?}, pauses {pauses:?}"
                    );
                    // Every pause left time for the attempt after it.
                    let mut t = Duration::ZERO;
                    for p in &pauses {
                        t += attempt.min(deadline - t) + *p;
                        assert!(t < deadline, "seed {seed}: a pause reached the deadline");
                    }
                }
            }
        }
    }

    #[test]
    fn pauses_grow_to_the_cap_and_stay_jittered() {
        let policy = RetryPolicy {
            backoff_initial: Duration::from_millis(10),
            backoff_max: Duration::from_millis(160),
            attempts_max: 100,
        };
        let (pauses, _) = run(policy, Duration::from_secs(60), Duration::ZERO, 7);
        let ceilings = [10u64, 20, 40, 80, 160, 160, 160];
        for (p, c) in pauses.iter().zip(ceilings) {
            let c = Duration::from_millis(c);
            assert!(*p >= c / 2 && *p <= c, "{p:?} outside [{:?}, {c:?}]", c / 2);
        }
        assert!(pauses.iter().all(|p| *p <= policy.backoff_max));
        // Jitter: two callers failing together do not pause alike.
        let (other, _) = run(policy, Duration::from_secs(60), Duration::ZERO, 8);
        assert_ne!(pauses[..10], other[..10]);
    }

    #[test]
    fn a_spent_deadline_gives_no_pause() {
        let mut b = Backoff::new(RetryPolicy::default(), fastrand::Rng::with_seed(1));
        assert_eq!(b.next_pause(Duration::ZERO), None);
        // Second pause: ceiling 40 ms, so at least 20 ms.
        assert_eq!(b.next_pause(Duration::from_millis(5)), None);
        assert!(b.next_pause(Duration::from_secs(1)).is_some());
    }
}
