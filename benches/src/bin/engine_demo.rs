//! `engine-demo`: the ledger engine on its own, in one process, one core.
//!
//! Until the replicated cluster exists this is the README's main job: it
//! loads a catalogue, runs a flash sale (10,000 buyers, 100 units), then a
//! reservation lifecycle load (reserve → confirm 80% / release 15% / expire
//! 5%) with a progress line, and checks the promises of design §1 and that a
//! snapshot restores to the same digest. Every figure it prints is measured
//! in this run.

use holdfast_engine::*;
use std::io::Write;
use std::time::Instant;

const LOCATIONS: [(&str, &str, u32); 4] = [
    ("berlin", "eu", 1),
    ("paris", "eu", 2),
    ("newark", "us", 1),
    ("reno", "us", 2),
];
const SKUS: u64 = 100_000;
const FLASH_BUYERS: u64 = 10_000;
const FLASH_UNITS: i64 = 100;
const LIFECYCLE_OPS_DEFAULT: u64 = 2_000_000;
/// Entry time of the first command (2026-01-01T00:00:00Z).
const T0_MS: u64 = 1_767_225_600_000;

/// Drives one engine with increasing log indexes and request ids.
struct Driver {
    engine: Engine,
    index: u64,
    now_ms: u64,
    request: u128,
    events: Vec<Event>,
}

impl Driver {
    fn apply(&mut self, kind: CommandKind) -> Outcome {
        self.index += 1;
        self.request += 1;
        self.events.clear();
        let cmd = Command {
            request_id: RequestId(self.request),
            kind,
        };
        let stamp = Stamp {
            index: self.index,
            now_ms: self.now_ms,
        };
        self.engine.apply(stamp, &cmd, &mut self.events)
    }
}

/// xorshift64*: a fixed-seed sequence, so every run does the same work.
struct Sequence(u64);

impl Sequence {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

fn reserve(sku: String, location: Option<&str>, customer: u64, ttl_ms: u64) -> CommandKind {
    CommandKind::Reserve(Reserve {
        owner: format!("cart-{customer:08}"),
        customer: format!("cust-{customer:06}"),
        region: None,
        lines: vec![ReserveLine {
            sku,
            quantity: 1,
            location: location.map(str::to_string),
        }],
        ttl_ms,
        policy: FillPolicy::AllOrNothing,
        allow_split: false,
    })
}

fn load_catalogue(d: &mut Driver) {
    let started = Instant::now();
    for (name, region, priority) in LOCATIONS {
        d.apply(CommandKind::UpsertLocation(UpsertLocation {
            location: name.into(),
            region: region.into(),
            priority,
        }))
        .expect("location");
    }
    for sku in 0..SKUS {
        for (name, _, _) in LOCATIONS {
            d.apply(CommandKind::AdjustStock(AdjustStock {
                sku: format!("sku-{sku:06}"),
                location: name.into(),
                delta: 1_000_000,
                expected_on_hand: None,
            }))
            .expect("stock");
        }
    }
    println!(
        "catalogue: {} locations, {} SKUs, {} stock rows loaded in {:.2} s",
        LOCATIONS.len(),
        SKUS,
        d.engine.row_count(),
        started.elapsed().as_secs_f64()
    );
}

fn flash_sale(d: &mut Driver) {
    d.apply(CommandKind::AdjustStock(AdjustStock {
        sku: "flash-sneaker".into(),
        location: "berlin".into(),
        delta: FLASH_UNITS,
        expected_on_hand: None,
    }))
    .expect("flash stock");
    let board = d.engine.board();
    let (mut won, mut refused, mut filtered) = (0u64, 0u64, 0u64);
    let started = Instant::now();
    for buyer in 0..FLASH_BUYERS {
        // The server's pre-filter would answer these without consensus.
        if board
            .scarcity("flash-sneaker", None)
            .is_some_and(|s| s.is_sold_out())
        {
            filtered += 1;
            continue;
        }
        match d.apply(reserve("flash-sneaker".into(), None, buyer, 600_000)) {
            Ok(Success::Reserved { reservation }) => {
                won += 1;
                d.apply(CommandKind::Confirm(Confirm {
                    reservation,
                    quantities: None,
                }))
                .expect("confirm a fresh hold");
            }
            Err(Refusal::OutOfStock { .. }) => refused += 1,
            other => panic!("unexpected outcome {other:?}"),
        }
    }
    let a = d
        .engine
        .availability("flash-sneaker", "berlin")
        .expect("row");
    println!(
        "flash sale: {FLASH_BUYERS} buyers for {FLASH_UNITS} units -> {won} sold, {refused} refused by the ledger, \
         {filtered} refused by the sold-out board; on_hand now {}, held {} ({:.1} ms)",
        a.on_hand,
        a.held,
        started.elapsed().as_secs_f64() * 1e3
    );
    assert_eq!(
        won as i64, FLASH_UNITS,
        "design §1.1: exactly the stock is sold"
    );
}

fn lifecycle(d: &mut Driver, ops: u64) {
    let mut seq = Sequence(0x9e37_79b9_7f4a_7c15);
    let (mut confirmed, mut released, mut left_to_expire) = (0u64, 0u64, 0u64);
    let started = Instant::now();
    let mut last_print = Instant::now();
    for i in 0..ops {
        let r = seq.next();
        let sku = format!("sku-{:06}", r % SKUS);
        let location = LOCATIONS[(r >> 32) as usize % LOCATIONS.len()].0;
        d.now_ms += u64::from(i % 64 == 0);
        let id = match d.apply(reserve(sku, Some(location), r % 50_000, 30_000)) {
            Ok(Success::Reserved { reservation }) => reservation,
            other => panic!("unexpected outcome {other:?}"),
        };
        match (r >> 40) % 100 {
            0..=79 => {
                d.apply(CommandKind::Confirm(Confirm {
                    reservation: id,
                    quantities: None,
                }))
                .expect("confirm");
                confirmed += 1;
            }
            80..=94 => {
                d.apply(CommandKind::Release(Release { reservation: id }))
                    .expect("release");
                released += 1;
            }
            _ => left_to_expire += 1,
        }
        if last_print.elapsed().as_millis() >= 250 {
            last_print = Instant::now();
            print!(
                "\rlifecycle: {:>9}/{ops} reservations, {:>6.2} M commands/s",
                i + 1,
                d.index as f64 / started.elapsed().as_secs_f64() / 1e6
            );
            let _ = std::io::stdout().flush();
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let commands = ops + confirmed + released;
    d.now_ms += 31_000;
    let expired = match d.apply(CommandKind::ExpireUpTo(ExpireUpTo { up_to_ms: d.now_ms })) {
        Ok(Success::Expired { reservations, .. }) => reservations,
        other => panic!("unexpected outcome {other:?}"),
    };
    println!(
        "\rlifecycle: {ops} reservations: {confirmed} confirmed, {released} released, {expired} expired \
         (of {left_to_expire} left to expire, some during the run); {commands} commands in {elapsed:.2} s = \
         {:.2} M commands/s on one core",
        commands as f64 / elapsed / 1e6
    );
}

fn main() {
    let ops = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(LIFECYCLE_OPS_DEFAULT);
    println!("holdfast engine demo: one shard's ledger in one thread (no Raft, no network yet)");
    let mut d = Driver {
        engine: Engine::default(),
        index: 0,
        now_ms: T0_MS,
        request: 0,
        events: Vec::new(),
    };
    load_catalogue(&mut d);
    flash_sale(&mut d);
    lifecycle(&mut d, ops);

    d.engine
        .check_invariants()
        .expect("design §1: no oversell, conservation");
    let started = Instant::now();
    let snapshot = d.engine.snapshot();
    let taken = started.elapsed();
    let started = Instant::now();
    let restored = Engine::restore(EngineConfig::default(), &snapshot).expect("restore");
    let restore_time = started.elapsed();
    let digest = d.engine.state_digest();
    assert_eq!(restored.state_digest(), digest, "design §1.5 determinism");
    println!(
        "invariants hold; snapshot {:.1} MB in {:.0} ms, restored in {:.0} ms, digest {digest:032x} equal after restore",
        snapshot.len() as f64 / 1e6,
        taken.as_secs_f64() * 1e3,
        restore_time.as_secs_f64() * 1e3
    );
    println!("reproduce: cargo run --release -p holdfast-bench --bin engine-demo -- {ops}");
}
