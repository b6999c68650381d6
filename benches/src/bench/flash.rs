//! The flash sale (design §5): `buyers` callers, released at once, each
//! reserve 1 unit of the flash row, which holds [`FLASH_UNITS`]; each
//! buyer that gets one confirms it at once (a checkout), which is what
//! lets the row become *sold out* (nothing promisable, nothing held) and
//! lets Holdfast's pre-filter refuse the rest without a Raft round trip.
//!
//! It reports how many succeeded (exactly the units, or the ledger is
//! wrong), when the last unit went, how the refusals split between the
//! pre-filter, the ledger and admission (`RESOURCE_EXHAUSTED`), and the
//! refusals' latency, and every answer's latency. The floor takes part too:
//! it echoes every buyer as sold, so it has no stock to judge, and its
//! buyers do not confirm; its answer latency is what the transport alone
//! allows for the same burst of calls. A buyer whose attempt got no answer from the ledger
//! (a leader change under the rush) sends it again with the same request
//! id, as the Rust client would, so every buyer's answer is the ledger's.

use crate::bench::closed_loop::CALL_TIMEOUT;
use crate::bench::grpc::Attempts;
use crate::bench::scenario::{Line, FLASH_SKU, FLASH_UNITS, HOT_LOCATION};
use crate::bench::stats::{histogram, record, Summary};
use crate::bench::system::SystemId;
use crate::bench::target::{Reply, Target};
use serde::Serialize;
use std::time::{Duration, Instant};

/// TTL of a buyer's hold: long enough to confirm, short enough that a
/// hold whose confirm was lost comes back during the run.
const FLASH_TTL_MS: u64 = 30_000;

/// What one system's flash sale gave.
#[derive(Debug, Clone, Serialize)]
pub struct FlashResult {
    /// The system.
    pub system: String,
    /// Buyers released at once.
    pub buyers: usize,
    /// Units on sale.
    pub units: i64,
    /// Buyers whose reserve succeeded (must equal `units`).
    pub sold: u64,
    /// Of `sold`: confirms that failed (their holds lapse by TTL).
    pub confirm_errors: u64,
    /// Refused out of stock, in all.
    pub refused: u64,
    /// Of `refused`: by the pre-filter, without a Raft round trip.
    pub refused_by_prefilter: u64,
    /// Buyers left with an admission refusal (`RESOURCE_EXHAUSTED`) when
    /// their deadline ran out.
    pub shed: u64,
    /// Admission refusals answered by sending the same first attempt
    /// again after a pause, as the client does.
    pub shed_resent: u64,
    /// Other failures.
    pub errors: u64,
    /// Attempts sent again after no answer from the ledger (no leader,
    /// dropped proposal), with the same request id.
    pub retries: u64,
    /// From the release of the buyers to the last unit's reserve answer.
    pub sold_out_ms: Option<f64>,
    /// From the release to the last buyer's answer.
    pub all_answered_ms: f64,
    /// Latency of all out-of-stock refusals, from the buyer's first
    /// attempt (pauses after admission refusals included).
    pub refusal_latency: Summary,
    /// Latency of the one call that brought each out-of-stock refusal.
    pub refusal_call_latency: Summary,
    /// Latency of the pre-filter's refusals alone.
    pub prefilter_latency: Summary,
    /// Latency of the admission refusals.
    pub shed_latency: Summary,
    /// Latency of every buyer's final answer, whatever it was, from its
    /// first attempt. On the floor (which answers at once) this is the
    /// cost of the burst itself on this machine's transport.
    pub answer_latency: Summary,
    /// The first error, if any.
    pub first_error: Option<String>,
}

impl FlashResult {
    /// Whether exactly the units on sale were sold.
    pub fn exact(&self) -> bool {
        i64::try_from(self.sold).is_ok_and(|s| s == self.units)
    }

    /// Share of the refusals made by the pre-filter.
    pub fn prefilter_share(&self) -> f64 {
        if self.refused == 0 {
            0.0
        } else {
            self.refused_by_prefilter as f64 / self.refused as f64
        }
    }
}

struct Buyer {
    attempts: Attempts,
    latency: Duration,
    answered_at: Duration,
    confirm_failed: bool,
}

/// Runs the sale on `target` with `buyers` buyers; request ids start with
/// `tag`.
pub async fn run(system: &str, target: &Target, buyers: usize, tag: &str) -> FlashResult {
    // The floor's buyers do not confirm: its burst is the reserves alone,
    // like a sale's, where only the few winners confirm.
    let checkout = system != SystemId::Floor.name();
    let (go, ready) = tokio::sync::watch::channel(false);
    let order = vec![Line {
        sku: FLASH_SKU.to_string(),
        location: HOT_LOCATION,
        quantity: 1,
    }];
    let tasks: Vec<_> = (0..buyers)
        .map(|b| {
            let mut ready = ready.clone();
            let target = target.clone();
            let order = order.clone();
            let id = format!("{tag}-flash-{b}");
            tokio::spawn(async move {
                let _ = ready.wait_for(|go| *go).await;
                let t = Instant::now();
                let deadline = t + CALL_TIMEOUT;
                let attempts = tokio::time::timeout(
                    CALL_TIMEOUT,
                    target.reserve_until_answered(b, &id, &order, FLASH_TTL_MS, deadline),
                )
                .await
                .unwrap_or_else(|_| Attempts {
                    reply: Reply::Error("reserve timed out".into()),
                    ..Attempts::default()
                });
                let latency = t.elapsed();
                let mut confirm_failed = false;
                if let (true, Reply::Held(held)) = (checkout, &attempts.reply) {
                    let confirm = tokio::time::timeout(
                        CALL_TIMEOUT,
                        target.confirm(b, held, &format!("{id}-confirm")),
                    )
                    .await;
                    confirm_failed = !matches!(confirm, Ok(Reply::Done));
                }
                (attempts, latency, t, confirm_failed)
            })
        })
        .collect();
    // Let every buyer reach its wait before the start.
    tokio::task::yield_now().await;
    let released = Instant::now();
    let _ = go.send(true);
    let mut answers = Vec::with_capacity(buyers);
    for task in tasks {
        let (attempts, latency, started, confirm_failed) = match task.await {
            Ok(r) => r,
            Err(e) => (
                Attempts {
                    reply: Reply::Error(e.to_string()),
                    ..Attempts::default()
                },
                Duration::ZERO,
                released,
                false,
            ),
        };
        answers.push(Buyer {
            attempts,
            latency,
            answered_at: (started + latency).saturating_duration_since(released),
            confirm_failed,
        });
    }
    summarise(system, buyers, &answers)
}

fn summarise(system: &str, buyers: usize, answers: &[Buyer]) -> FlashResult {
    let (mut refusals, mut prefiltered, mut shed_h) = (histogram(), histogram(), histogram());
    let (mut refusal_calls, mut answered) = (histogram(), histogram());
    let mut result = FlashResult {
        system: system.to_string(),
        buyers,
        units: FLASH_UNITS,
        sold: 0,
        confirm_errors: 0,
        refused: 0,
        refused_by_prefilter: 0,
        shed: 0,
        shed_resent: 0,
        errors: 0,
        retries: 0,
        sold_out_ms: None,
        all_answered_ms: 0.0,
        refusal_latency: Summary::default(),
        refusal_call_latency: Summary::default(),
        prefilter_latency: Summary::default(),
        shed_latency: Summary::default(),
        answer_latency: Summary::default(),
        first_error: None,
    };
    let mut sold_at = Vec::new();
    for b in answers {
        result.retries += u64::from(b.attempts.unanswered);
        result.shed_resent += u64::from(b.attempts.shed);
        result.all_answered_ms = result
            .all_answered_ms
            .max(b.answered_at.as_secs_f64() * 1e3);
        record(&mut answered, b.latency);
        match &b.attempts.reply {
            Reply::Held(_) | Reply::Done => {
                result.sold += 1;
                result.confirm_errors += u64::from(b.confirm_failed);
                sold_at.push(b.answered_at);
            }
            Reply::Refused { prefilter } => {
                result.refused += 1;
                record(&mut refusals, b.latency);
                record(&mut refusal_calls, b.attempts.last_call);
                if *prefilter {
                    result.refused_by_prefilter += 1;
                    record(&mut prefiltered, b.latency);
                }
            }
            Reply::Shed => {
                result.shed += 1;
                record(&mut shed_h, b.latency);
            }
            Reply::Error(e) => {
                result.errors += 1;
                result.first_error.get_or_insert_with(|| e.clone());
            }
        }
    }
    result.sold_out_ms = sold_at.iter().max().map(|d| d.as_secs_f64() * 1e3);
    result.refusal_latency = Summary::of(&refusals);
    result.refusal_call_latency = Summary::of(&refusal_calls);
    result.prefilter_latency = Summary::of(&prefiltered);
    result.shed_latency = Summary::of(&shed_h);
    result.answer_latency = Summary::of(&answered);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn buyer(reply: Reply, ms: u64) -> Buyer {
        Buyer {
            attempts: Attempts {
                reply,
                shed: 1,
                unanswered: 0,
                last_call: Duration::from_millis(1),
            },
            latency: Duration::from_millis(ms),
            answered_at: Duration::from_millis(ms),
            confirm_failed: false,
        }
    }

    #[test]
    fn a_sale_is_exact_only_with_exactly_the_units_sold() {
        let mut answers: Vec<Buyer> = (0..FLASH_UNITS)
            .map(|i| buyer(Reply::Held(format!("0-{i}")), 5))
            .collect();
        answers.push(buyer(Reply::Refused { prefilter: true }, 1));
        answers.push(buyer(Reply::Refused { prefilter: false }, 9));
        answers.push(buyer(Reply::Shed, 1));
        let r = summarise("x", answers.len(), &answers);
        assert!(r.exact());
        assert_eq!((r.refused, r.refused_by_prefilter, r.shed), (2, 1, 1));
        assert_eq!(r.prefilter_share(), 0.5);
        assert_eq!(r.sold_out_ms, Some(5.0));
        assert_eq!(r.shed_resent, answers.len() as u64);
        assert!(r.refusal_latency.p99_ms > r.refusal_call_latency.p99_ms);
        assert_eq!(r.answer_latency.count, answers.len() as u64);
        assert!(r.answer_latency.max_ms >= r.refusal_latency.max_ms);
        answers.push(buyer(Reply::Held("0-oversold".into()), 5));
        assert!(!summarise("x", answers.len(), &answers).exact());
    }
}
