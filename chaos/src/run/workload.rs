//! The clients of a run. A *worker* is one history process: it sends one
//! operation at a time through `holdfast_client::Client`, records the
//! invoke and how it ended, and decides its next operation with its own
//! seeded random source.
//!
//! - `flash`: rounds of a flash sale. Each round stocks 5 fresh SKUs with
//!   100 units at one location; every worker races to reserve 1-2 units,
//!   then confirms, releases or walks away (some holds have a 1-3 s TTL and
//!   expire). Fresh SKUs per round keep each row's history small for the
//!   linearizability search.
//! - `mixed`: 40 SKUs at 2 locations per round; reserves of 1-3 lines, of
//!   which one multi-line reserve in `CROSS_SHARD_ONE_IN` is cross-shard
//!   (its other lines' SKUs hash to other shards than the first's; the
//!   server holds it as one part per shard and answers a joined id), the
//!   rest within one shard; stock adjustments up and down, whole and
//!   partial confirms, releases, linearizable reads. Cross-shard
//!   reservations are confirmed, released, left to expire and retried
//!   like the others.
//!
//! An operation that ends *unknown* is kept; later the worker sends it
//! again, same request id and body (and after the run, once healed, every
//! one left is sent again), which is how a real caller learns the outcome.
//! One acknowledged operation in `RESEND_ACKED_ONE_IN` is sent again too:
//! the answer must be the first one (this is what makes a server that
//! forgets request ids fail the check).

use super::recorder::{completion_of, Completion, Recorder};
use holdfast_chaos::history::{Allocation, Op, OpResult, ReserveLine};
use holdfast_client::routing::shard_of;
use holdfast_client::{
    AdjustStock, Client, Confirm, Consistency, Error, Release, Reserve, RowKey, UpsertLocation,
};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// SKUs per flash round, units each (the issue's 5 × 100).
const FLASH_SKUS: usize = 5;
const FLASH_UNITS: i64 = 100;
/// SKUs per mixed round, at each of `MIXED_LOCATIONS`, stocked with
/// `MIXED_UNITS` each.
const MIXED_SKUS: usize = 40;
const MIXED_LOCATIONS: [&str; 2] = ["L1", "L2"];
const MIXED_UNITS: i64 = 50;
/// One multi-line `mixed` reserve in this many spans several shards.
const CROSS_SHARD_ONE_IN: u32 = 4;
/// Hold duration of a reserve that is not meant to expire: longer than
/// any run.
const TTL_LONG_MS: u64 = 3_600_000;
/// Range of short holds, meant to expire during the run (the server's
/// minimum TTL is 1 s).
const TTL_SHORT_MS: std::ops::Range<u64> = 1_000..3_000;
/// Unknown operations a worker keeps for later retries; past it the oldest
/// is dropped (it stays an open operation in the history).
const UNKNOWN_KEPT_MAX: usize = 64;
/// One acknowledged operation in this many is sent again later.
const RESEND_ACKED_ONE_IN: u32 = 25;
/// Pending reservations a worker remembers to confirm or release later.
const HELD_KEPT_MAX: usize = 32;
/// Set-up time for creating locations and the first rows (leaders are
/// being elected meanwhile).
const SETUP_BASE: Duration = Duration::from_secs(30);
/// Set-up time per stocked row: a row takes about 3 ms in a release build
/// on two cores (one Raft round trip and fsync); this leaves room for
/// debug builds and a loaded machine.
const SETUP_PER_ROW: Duration = Duration::from_millis(20);

/// Which workload.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Workload {
    /// Many clients race for few SKUs.
    Flash,
    /// Many SKUs, multi-line reserves, adjustments, partial confirms.
    Mixed,
}

/// What every worker shares.
pub struct Shared {
    pub client: Client,
    pub recorder: Arc<Recorder>,
    pub shards: u32,
    pub workload: Workload,
    pub seed: u64,
    /// Length of a round (fresh SKUs).
    pub round: Duration,
    pub start: Instant,
}

impl Shared {
    fn round_of(&self, at: Instant) -> u64 {
        (at.duration_since(self.start).as_millis() / self.round.as_millis().max(1)) as u64
    }

    fn skus(&self, round: u64) -> Vec<String> {
        match self.workload {
            Workload::Flash => (0..FLASH_SKUS).map(|k| format!("F{round}-{k}")).collect(),
            Workload::Mixed => (0..MIXED_SKUS).map(|k| format!("M{round}-{k}")).collect(),
        }
    }

    fn locations(&self) -> &'static [&'static str] {
        match self.workload {
            Workload::Flash => &MIXED_LOCATIONS[..1],
            Workload::Mixed => &MIXED_LOCATIONS,
        }
    }
}

/// One history process.
pub struct Worker {
    pub process: u64,
    shared: Arc<Shared>,
    rng: fastrand::Rng,
    next_id: u64,
    /// Reserves acknowledged by this worker and not yet resolved by it.
    held: Vec<(String, Vec<Allocation>)>,
    /// Operations that ended unknown, to send again.
    unknown: Vec<Op>,
    /// Operations sent, completions unknown.
    pub ops: u64,
}

impl Worker {
    pub fn new(process: u64, shared: Arc<Shared>) -> Worker {
        let rng =
            fastrand::Rng::with_seed(shared.seed ^ process.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        Worker {
            process,
            shared,
            rng,
            next_id: 0,
            held: Vec::new(),
            unknown: Vec::new(),
            ops: 0,
        }
    }

    fn request_id(&mut self, kind: &str) -> String {
        self.next_id += 1;
        format!(
            "{kind}-{}-p{}-{}",
            self.shared.seed, self.process, self.next_id
        )
    }

    /// Sends `op`, records it, and remembers it if its outcome is unknown.
    pub async fn call(&mut self, op: Op) -> Result<OpResult, Completion> {
        self.ops += 1;
        let recorder = self.shared.recorder.clone();
        recorder.invoke(self.process, &op);
        let outcome = execute(&self.shared.client, &op).await;
        let completion = match &outcome {
            Ok(result) => Completion::Ok(result.clone()),
            Err(e) => completion_of(e),
        };
        let keep = match &completion {
            Completion::Ok(r) => Ok(r.clone()),
            Completion::Refused {
                code,
                reason,
                metadata,
            } => Err(Completion::Refused {
                code,
                reason: reason.clone(),
                metadata: metadata.clone(),
            }),
            Completion::Unknown(e) => Err(Completion::Unknown(e.clone())),
        };
        recorder.complete(self.process, completion);
        // Unknown outcomes are sent again later; so is, now and then, an
        // acknowledged one (a caller whose answer was lost): the server
        // must answer it with the first answer (design §1.3).
        let again = match &keep {
            Err(Completion::Unknown(_)) => true,
            Ok(_) => self.rng.u32(..RESEND_ACKED_ONE_IN) == 0,
            Err(_) => false,
        };
        if again && op.request_id().is_some() {
            if self.unknown.len() >= UNKNOWN_KEPT_MAX {
                self.unknown.remove(0);
            }
            self.unknown.push(op);
        }
        keep
    }

    fn after_ok(&mut self, op: &Op, result: &OpResult) {
        if let (
            Op::Reserve { .. },
            OpResult::Reserved {
                reservation_id,
                allocations,
                ..
            },
        ) = (op, result)
        {
            if self.held.len() >= HELD_KEPT_MAX {
                self.held.remove(0);
            }
            self.held
                .push((reservation_id.clone(), allocations.clone()));
        }
    }

    /// Sends one unknown operation again, if there is one.
    async fn retry_one(&mut self) {
        if self.unknown.is_empty() {
            return;
        }
        let op = self.unknown.remove(self.rng.usize(..self.unknown.len()));
        let first = matches!(op, Op::Reserve { .. });
        if let (Ok(result), true) = (self.call(op.clone()).await, first) {
            // A reserve acknowledged before is already in `held`.
            if !self
                .held
                .iter()
                .any(|(id, _)| Some(id.as_str()) == reserved_id(&result))
            {
                self.after_ok(&op, &result);
            }
        }
    }

    /// After the run, once healed: every unknown operation once more.
    pub async fn retry_all_unknown(&mut self, until: Instant) {
        let ops = std::mem::take(&mut self.unknown);
        for op in ops {
            if Instant::now() >= until {
                break;
            }
            let _ = self.call(op).await;
        }
    }

    /// Runs until `end`.
    pub async fn run(&mut self, end: Instant) {
        while Instant::now() < end {
            if !self.unknown.is_empty() && self.rng.u32(..10) == 0 {
                self.retry_one().await;
            } else if !self.held.is_empty() && self.rng.u32(..3) == 0 {
                self.resolve_one().await;
            } else {
                match self.shared.workload {
                    Workload::Flash => self.flash_step().await,
                    Workload::Mixed => self.mixed_step().await,
                }
            }
            // Pacing: the cluster shares two cores with the harness.
            tokio::time::sleep(Duration::from_millis(self.rng.u64(1..20))).await;
        }
    }

    /// Reserves `lines`. A reserve whose lines hash to several shards
    /// records each line's shard (the checker maps it onto the parts the
    /// server makes); any other records its one shard.
    async fn reserve(&mut self, mut lines: Vec<ReserveLine>) {
        let request_id = self.request_id("r");
        let ttl_ms = if self.rng.u32(..8) == 0 {
            self.rng.u64(TTL_SHORT_MS)
        } else {
            TTL_LONG_MS
        };
        let shards = self.shared.shards;
        let first = shard_of(&lines[0].sku, shards);
        let cross = lines.iter().any(|l| shard_of(&l.sku, shards) != first);
        if cross {
            for l in &mut lines {
                l.shard = Some(shard_of(&l.sku, shards));
            }
        }
        let shard = (!cross).then_some(first);
        let op = Op::Reserve {
            owner: Some(request_id.clone()),
            request_id,
            lines,
            shard,
            ttl_ms: Some(ttl_ms),
        };
        if let Ok(result) = self.call(op.clone()).await {
            self.after_ok(&op, &result);
        }
    }

    async fn flash_step(&mut self) {
        let skus = self.shared.skus(self.shared.round_of(Instant::now()));
        let sku = skus[self.rng.usize(..skus.len())].clone();
        let line = ReserveLine {
            sku,
            location: self.shared.locations()[0].to_string(),
            quantity: self.rng.i64(1..=2),
            shard: None,
        };
        self.reserve(vec![line]).await;
    }

    async fn mixed_step(&mut self) {
        let skus = self.shared.skus(self.shared.round_of(Instant::now()));
        let locations = self.shared.locations();
        let pick_row = |rng: &mut fastrand::Rng, sku: &str| {
            (
                sku.to_string(),
                locations[rng.usize(..locations.len())].to_string(),
            )
        };
        match self.rng.u32(..10) {
            0..=5 => {
                let lines = self
                    .reserve_skus(&skus)
                    .into_iter()
                    .map(|sku| {
                        let (sku, location) = pick_row(&mut self.rng, &sku);
                        ReserveLine {
                            sku,
                            location,
                            quantity: self.rng.i64(1..=3),
                            shard: None,
                        }
                    })
                    .collect();
                self.reserve(lines).await;
            }
            6..=7 => {
                let k = self.rng.usize(..skus.len());
                let (sku, location) = pick_row(&mut self.rng, &skus[k]);
                let delta = if self.rng.bool() {
                    self.rng.i64(1..=10)
                } else {
                    -self.rng.i64(1..=3)
                };
                let request_id = self.request_id("a");
                let _ = self
                    .call(Op::AdjustStock {
                        request_id,
                        sku,
                        location,
                        delta,
                        expected_on_hand: None,
                    })
                    .await;
            }
            _ => {
                let k = self.rng.usize(..skus.len());
                let (sku, location) = pick_row(&mut self.rng, &skus[k]);
                let _ = self
                    .call(Op::ReadAvailability {
                        sku,
                        location,
                        stale: false,
                    })
                    .await;
            }
        }
    }

    /// The SKUs of one `mixed` reserve, 1-3 distinct: a random first one,
    /// and further ones from its shard or, for one multi-line reserve in
    /// `CROSS_SHARD_ONE_IN`, from the other shards.
    fn reserve_skus(&mut self, skus: &[String]) -> Vec<String> {
        let shards = self.shared.shards;
        let first = skus[self.rng.usize(..skus.len())].clone();
        let shard = shard_of(&first, shards);
        let more = self.rng.usize(0..=2);
        let cross = more > 0 && self.rng.u32(..CROSS_SHARD_ONE_IN) == 0;
        let pool: Vec<&String> = skus
            .iter()
            .filter(|s| **s != first && (shard_of(s, shards) == shard) != cross)
            .collect();
        let mut chosen = vec![first];
        for _ in 0..more {
            if let Some(s) = pool.get(self.rng.usize(..pool.len().max(1))) {
                if !chosen.contains(s) {
                    chosen.push((*s).clone());
                }
            }
        }
        chosen
    }

    /// Confirms (wholly or, in `mixed`, partly) or releases a hold this
    /// worker made.
    async fn resolve_one(&mut self) {
        let (reservation_id, allocations) = self.held.remove(self.rng.usize(..self.held.len()));
        let op = if self.rng.u32(..5) < 3 {
            // At least one unit: a confirm of nothing is refused as an
            // invalid argument and would leave the hold pending.
            let quantities =
                (self.shared.workload == Workload::Mixed && self.rng.bool()).then(|| {
                    allocations
                        .iter()
                        .enumerate()
                        .map(|(i, a)| self.rng.i64(i64::from(i == 0).min(a.quantity)..=a.quantity))
                        .collect()
                });
            Op::Confirm {
                request_id: self.request_id("c"),
                reservation_id,
                quantities,
            }
        } else {
            Op::Release {
                request_id: self.request_id("x"),
                reservation_id,
            }
        };
        let _ = self.call(op).await;
    }
}

fn reserved_id(result: &OpResult) -> Option<&str> {
    match result {
        OpResult::Reserved { reservation_id, .. } => Some(reservation_id),
        _ => None,
    }
}

/// Creates the locations and stocks every round's rows, recording each
/// adjustment (process 0). Returns false unless every row got a definite
/// answer within `SETUP_BASE` plus `SETUP_PER_ROW` per row (a long run
/// stocks thousands of rows before its first fault).
pub async fn set_up(shared: &Shared, rounds: u64) -> bool {
    let rows = rounds as usize * shared.skus(0).len() * shared.locations().len();
    let until = Instant::now() + SETUP_BASE + SETUP_PER_ROW * rows as u32;
    let client = &shared.client;
    for (i, location) in shared.locations().iter().enumerate() {
        let request = UpsertLocation::new(*location, "eu", i as u32 + 1)
            .request_id(format!("loc-{}-{location}", shared.seed));
        loop {
            match client.upsert_location(request.clone()).await {
                Ok(_) => break,
                Err(e) if e.is_retryable() && Instant::now() < until => continue,
                Err(e) => {
                    eprintln!("holdfast-chaos: cannot create location {location}: {e}");
                    return false;
                }
            }
        }
    }
    let units = match shared.workload {
        Workload::Flash => FLASH_UNITS,
        Workload::Mixed => MIXED_UNITS,
    };
    let mut setup = Worker::new(0, Arc::new(shared_clone(shared)));
    for round in 0..rounds {
        for sku in shared.skus(round) {
            for location in shared.locations() {
                let op = Op::AdjustStock {
                    request_id: format!("stock-{}-{sku}-{location}", shared.seed),
                    sku: sku.clone(),
                    location: location.to_string(),
                    delta: units,
                    expected_on_hand: None,
                };
                // Same id until a definite answer: applied at most once.
                loop {
                    if Instant::now() >= until {
                        eprintln!("holdfast-chaos: set-up: {rows} rows not stocked in time");
                        return false;
                    }
                    match setup.call(op.clone()).await {
                        Err(Completion::Unknown(_)) => continue,
                        _ => break,
                    }
                }
            }
        }
    }
    true
}

fn shared_clone(s: &Shared) -> Shared {
    Shared {
        client: s.client.clone(),
        recorder: s.recorder.clone(),
        shards: s.shards,
        workload: s.workload,
        seed: s.seed,
        round: s.round,
        start: s.start,
    }
}

/// Sends `op` through the client and translates the answer.
async fn execute(client: &Client, op: &Op) -> Result<OpResult, Error> {
    match op.clone() {
        Op::Reserve {
            request_id,
            lines,
            owner,
            ttl_ms,
            ..
        } => {
            let mut r = Reserve::new(owner.unwrap_or_default(), "chaos")
                .ttl_ms(ttl_ms.unwrap_or(TTL_LONG_MS))
                .request_id(request_id);
            for l in lines {
                r = r.line_at(l.sku, l.quantity, l.location);
            }
            let held = client.reserve(r).await?;
            Ok(OpResult::Reserved {
                reservation_id: held.reservation_id,
                allocations: held
                    .allocations
                    .into_iter()
                    .map(|a| Allocation {
                        sku: a.sku,
                        location: a.location,
                        quantity: a.quantity,
                        available_after: Some(a.available_after),
                    })
                    .collect(),
                expires_at_ms: Some(held.expires_at_ms),
            })
        }
        Op::Confirm {
            request_id,
            reservation_id,
            quantities,
        } => {
            let c = match quantities {
                Some(q) => Confirm::partly(reservation_id, q),
                None => Confirm::all(reservation_id),
            };
            let done = client.confirm(c.request_id(request_id)).await?;
            Ok(OpResult::Confirmed {
                units_confirmed: done.units_confirmed,
                units_released: done.units_released,
            })
        }
        Op::Release {
            request_id,
            reservation_id,
        } => {
            let done = client
                .release(Release::new(reservation_id).request_id(request_id))
                .await?;
            Ok(OpResult::Released {
                units_released: done.units_released,
            })
        }
        Op::AdjustStock {
            request_id,
            sku,
            location,
            delta,
            expected_on_hand,
        } => {
            let mut a = AdjustStock::new(sku, location, delta).request_id(request_id);
            if let Some(e) = expected_on_hand {
                a = a.expect_on_hand(e);
            }
            let done = client.adjust_stock(a).await?;
            Ok(OpResult::Adjusted {
                on_hand: done.on_hand,
                available: done.available,
            })
        }
        Op::ReadAvailability { sku, location, .. } => {
            let rows = client
                .get_availability(vec![RowKey::at(sku, location)], Consistency::Linearizable)
                .await?;
            Ok(match rows.into_iter().next() {
                Some(r) => OpResult::Availability {
                    on_hand: r.on_hand,
                    held: r.held,
                    available: r.available,
                    as_of_index: r.as_of_index,
                },
                None => OpResult::NoRow {},
            })
        }
        Op::Extend { .. } => unreachable!("the workloads send no extend"),
    }
}
