//! What a closed-loop caller sends: one [`CallFn`] per caller, making
//! reserves, `ReserveBatch` calls or whole lifecycles from a [`Picker`]'s
//! orders, with request ids of its own.

use crate::bench::closed_loop::CallFn;
use crate::bench::scenario::{Order, Picker};
use crate::bench::stats::Outcome;
use crate::bench::target::{Reply, Target};
use rand::rngs::SmallRng;
use rand::SeedableRng;

/// TTL of the holds of the reserve-only scenarios: they outlive the run.
pub(crate) const LONG_TTL_MS: u64 = 3_600_000;
/// TTL of the lifecycle's holds that are left to expire (the API's least).
const SHORT_TTL_MS: u64 = 1_000;
/// Reservations per `ReserveBatch` call (the issue's 100).
pub const BATCH_SIZE: usize = 100;

/// What each call of a closed-loop caller does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallKind {
    /// One `Reserve` of one order.
    Reserve,
    /// One `ReserveBatch` of this many orders.
    Batch(usize),
    /// Reserve, then by the call's number: confirm 16 in 20 (80%),
    /// release 3 in 20 (15%), walk away from 1 in 20 (5%, with a short TTL
    /// so it expires).
    Lifecycle,
}

/// A closed-loop caller making `kind` calls of `picker`'s orders; `seed`
/// and `caller` fix its orders (the same for every system), and `cell_no`
/// keeps its request ids apart from other cells'.
pub fn caller_fn(
    kind: CallKind,
    target: &Target,
    picker: &Picker,
    seed: u64,
    caller: usize,
    cell_no: usize,
) -> CallFn {
    let target = target.clone();
    let picker = picker.clone();
    let mut rng = SmallRng::seed_from_u64(seed | caller as u64);
    let mut n = 0u64;
    Box::new(move || {
        n += 1;
        let id = format!("k{cell_no}-{caller}-{n}");
        let target = target.clone();
        match kind {
            CallKind::Reserve => {
                let order = picker.order(&mut rng);
                Box::pin(async move {
                    Outcome::of(&target.reserve(caller, &id, &order, LONG_TTL_MS).await)
                })
            }
            CallKind::Batch(batch) => {
                let items: Vec<_> = (0..batch)
                    .map(|k| (format!("{id}-{k}"), picker.order(&mut rng)))
                    .collect();
                Box::pin(async move {
                    match target.reserve_batch(&items, LONG_TTL_MS).await {
                        Some(reply) => Outcome::of_batch(&reply),
                        None => Outcome::of(&Reply::Error("no batch call".into())),
                    }
                })
            }
            CallKind::Lifecycle => {
                let order = picker.order(&mut rng);
                let fate = (n + caller as u64) % 20;
                Box::pin(lifecycle(target, caller, id, order, fate))
            }
        }
    })
}

/// One lifecycle of fate `fate` (0..20, see [`CallKind::Lifecycle`]).
async fn lifecycle(target: Target, caller: usize, id: String, order: Order, fate: u64) -> Outcome {
    let ttl = if fate == 19 {
        SHORT_TTL_MS
    } else {
        LONG_TTL_MS
    };
    let held = match target.reserve(caller, &id, &order, ttl).await {
        Reply::Held(h) => h,
        other => return Outcome::of(&other),
    };
    let resolved = match fate {
        0..=15 => target.confirm(caller, &held, &format!("{id}-c")).await,
        16..=18 => target.release(caller, &held, &format!("{id}-r")).await,
        _ => Reply::Done,
    };
    Outcome::of(&resolved)
}
