//! Starting the systems of a run: Holdfast clusters, the floor and the
//! peers, each stocked with the same rows. A Holdfast system or the floor
//! that does not start is an error of the run; a peer that does not is
//! skipped with a note.

use crate::bench::grpc::{GrpcTarget, HoldfastCluster};
use crate::bench::peers::floor::Floor;
use crate::bench::peers::postgres::{PgTarget, Postgres};
use crate::bench::peers::redis::{Redis, RedisTarget};
use crate::bench::plan::{Options, Plan};
use crate::bench::report::SystemNote;
use crate::bench::scenario::SHARDS;
use crate::bench::system::SystemId;
use crate::bench::target::Target;
use std::path::Path;
use std::time::Instant;

/// A system that started, and how to call it.
pub(crate) struct Live {
    pub(crate) id: SystemId,
    pub(crate) target: Target,
    /// Index into `Owned::clusters` for Holdfast (leaders are looked up
    /// again before each cell).
    pub(crate) cluster: Option<usize>,
}

/// Every process the run started; dropping it stops them all.
#[derive(Default)]
pub(crate) struct Owned {
    pub(crate) clusters: Vec<HoldfastCluster>,
    pub(crate) floor: Option<Floor>,
    pub(crate) postgres: Option<Postgres>,
    pub(crate) redis: Vec<Redis>,
}

/// Starts the wanted systems; notes say what ran and what was skipped.
pub(crate) async fn start_systems(
    o: &Options,
    plan: &Plan,
    log_dir: &Path,
    owned: &mut Owned,
    notes: &mut Vec<SystemNote>,
    errors: &mut Vec<String>,
) -> Vec<Live> {
    let mut live = Vec::new();
    let mut note = |system: SystemId, ran: bool, note: String| {
        eprintln!(
            "holdfast-bench: {}: {}{note}",
            system.name(),
            if ran { "" } else { "skipped: " }
        );
        notes.push(SystemNote {
            system: system.name().into(),
            ran,
            note,
        });
    };
    let wants = |s: SystemId| o.systems.contains(&s);
    if wants(SystemId::Floor) {
        match Floor::start(log_dir) {
            Ok(floor) => {
                let target = Target::Grpc(GrpcTarget::new(&vec![floor.port; SHARDS as usize], 1));
                live.push(Live {
                    id: SystemId::Floor,
                    target,
                    cluster: None,
                });
                owned.floor = Some(floor);
                note(
                    SystemId::Floor,
                    true,
                    "grpc-floor: the same tonic stack answering at once".into(),
                );
            }
            Err(e) => {
                errors.push(format!("floor: {e}"));
                note(SystemId::Floor, false, e);
            }
        }
    }
    // Start both clusters before stocking either, so their elections overlap.
    let mut starting = Vec::new();
    for (id, size) in [(SystemId::Holdfast1, 1), (SystemId::Holdfast3, 3)] {
        if wants(id) {
            match HoldfastCluster::start(size, log_dir) {
                Ok(c) => starting.push((id, c)),
                Err(e) => {
                    errors.push(format!("{}: {e}", id.name()));
                    note(id, false, e);
                }
            }
        }
    }
    for (id, cluster) in starting {
        let t = Instant::now();
        match cluster.stock(plan.stocked()).await {
            Ok(()) => {
                let target = Target::Grpc(cluster.target(1).await);
                note(
                    id,
                    true,
                    format!(
                        "{} real holdfast-server process(es), fsync on, {SHARDS} shards; {} rows stocked in {:.1} s",
                        cluster.size,
                        plan.stocked().rows() + 2,
                        t.elapsed().as_secs_f64()
                    ),
                );
                live.push(Live {
                    id,
                    target,
                    cluster: Some(owned.clusters.len()),
                });
                owned.clusters.push(cluster);
            }
            Err(e) => {
                errors.push(format!("{}: {e}", id.name()));
                note(id, false, e);
            }
        }
    }
    if wants(SystemId::Postgres) || wants(SystemId::PostgresAsync) {
        match start_postgres(o, plan, log_dir).await {
            Ok((pg, sync, no_sync)) => {
                for (id, target, how) in [
                    (SystemId::Postgres, sync, "synchronous_commit=on"),
                    (SystemId::PostgresAsync, no_sync, "synchronous_commit=off"),
                ] {
                    if wants(id) {
                        note(id, true, format!("PostgreSQL, fsync=on, {how}, {} connections, one PL/pgSQL call per operation", crate::bench::peers::postgres::CONNECTIONS));
                        live.push(Live {
                            id,
                            target: Target::Postgres(target),
                            cluster: None,
                        });
                    }
                }
                owned.postgres = Some(pg);
            }
            Err(e) => {
                for id in [SystemId::Postgres, SystemId::PostgresAsync] {
                    if wants(id) {
                        note(id, false, e.clone());
                    }
                }
            }
        }
    }
    for (id, fsync) in [
        (SystemId::RedisAlways, "always"),
        (SystemId::RedisEverysec, "everysec"),
    ] {
        if !wants(id) {
            continue;
        }
        match start_redis(fsync, o, plan, log_dir).await {
            Ok((redis, target)) => {
                note(id, true, format!("redis-server, appendonly yes, appendfsync {fsync}, {} multiplexed connections, one Lua script call per operation", crate::bench::peers::redis::CONNECTIONS));
                live.push(Live {
                    id,
                    target: Target::Redis(target),
                    cluster: None,
                });
                owned.redis.push(redis);
            }
            Err(e) => note(id, false, e),
        }
    }
    // Each level runs its systems in this order.
    live.sort_by_key(|l| SystemId::ALL.iter().position(|s| *s == l.id));
    live
}

async fn start_postgres(
    o: &Options,
    plan: &Plan,
    log_dir: &Path,
) -> Result<(Postgres, PgTarget, PgTarget), String> {
    let pg = Postgres::start(o.install, log_dir).await?;
    pg.stock(plan.stocked()).await?;
    let sync = pg.target(true).await?;
    let no_sync = pg.target(false).await?;
    Ok((pg, sync, no_sync))
}

async fn start_redis(
    fsync: &str,
    o: &Options,
    plan: &Plan,
    log_dir: &Path,
) -> Result<(Redis, RedisTarget), String> {
    let redis = Redis::start(fsync, o.install, log_dir)?;
    redis.stock(plan.stocked()).await?;
    let target = redis.target().await?;
    Ok((redis, target))
}
