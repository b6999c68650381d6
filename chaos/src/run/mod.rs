//! `holdfast-chaos run`: start a cluster, drive a workload through the
//! client while the nemesis injects faults, heal, wait until every replica
//! has applied the same index, dump every shard of every node, and check.
//!
//! Output directory: `history.jsonl`, `final.jsonl` (one replica per
//! line), `faults.json` (the seeded schedule), `leaders.jsonl` (who led
//! each shard when), `report.txt`, `timeline.svg`, `logs/`.

pub mod cluster;
pub mod leaders;
pub mod nemesis;
pub mod recorder;
pub mod workload;

use cluster::Cluster;
use holdfast_chaos::final_state::{
    FinalLine, FinalReservation, FinalRow, FinalState, ReplicaState, ReservationStatus, ShardDigest,
};
use holdfast_client::pb::internal::DumpShardResponse;
use holdfast_client::{Client, ClientOptions};
use nemesis::FaultKind;
use recorder::Recorder;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;
use workload::{Shared, Worker, Workload};

/// Who led each shard when (`leaders::watch`), next to the history.
pub const LEADERS_FILE: &str = "leaders.jsonl";
/// How long the harness may take beyond `--duration` (setup, healing,
/// convergence, dumps, retries) before it gives up.
const OVERTIME: Duration = Duration::from_secs(120);
/// Longest wait for replicas to agree after healing.
const CONVERGE_MAX: Duration = Duration::from_secs(60);
/// Client deadline per call during the run: short, so that calls stuck on
/// a fault end unknown and are retried later.
const CALL_DEADLINE: Duration = Duration::from_secs(3);
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(1);

/// Settings of one run.
pub struct RunConfig {
    pub nodes: usize,
    pub shards: u32,
    pub duration: Duration,
    pub seed: u64,
    pub faults: Vec<FaultKind>,
    pub workload: Workload,
    pub clients: usize,
    pub round: Duration,
    pub out: PathBuf,
    pub server_bin: PathBuf,
    pub server_args: Vec<String>,
}

/// What a run produced, before the check.
pub struct RunOutput {
    pub faults: u64,
}

/// Runs the scenario and writes history and final state into `out`.
pub async fn run(config: &RunConfig) -> Result<RunOutput, String> {
    // Until set-up is done, only connecting needs a bound; from then on
    // the run has its duration plus `OVERTIME`.
    let mut hard_end = Instant::now() + OVERTIME;
    std::fs::create_dir_all(&config.out).map_err(|e| format!("{}: {e}", config.out.display()))?;
    let data = config.out.join("data");
    let _ = std::fs::remove_dir_all(&data);
    let schedule = nemesis::plan(
        config.seed,
        config.nodes,
        config.shards,
        config.duration.as_millis() as u64,
        &config.faults,
    );
    let schedule_json = serde_json::to_string_pretty(&schedule).map_err(|e| e.to_string())?;
    std::fs::write(config.out.join("faults.json"), schedule_json).map_err(|e| e.to_string())?;
    let cluster = Cluster::start(
        &config.server_bin,
        config.nodes,
        config.shards,
        &config.out,
        &config.server_args,
    )
    .map_err(|e| format!("cannot start {}: {e}", config.server_bin.display()))?;
    let addresses = cluster.addresses();
    let cluster = Arc::new(Mutex::new(cluster));
    let recorder =
        Arc::new(Recorder::create(&config.out.join("history.jsonl")).map_err(|e| e.to_string())?);
    let (stop_leaders, leaders_stopped) = tokio::sync::oneshot::channel();
    let leader_watch = {
        let ports = cluster.lock().await.ports.clone();
        let recorder = recorder.clone();
        let path = config.out.join(LEADERS_FILE);
        tokio::spawn(async move { leaders::watch(ports, recorder, &path, leaders_stopped).await })
    };
    let client = connect(&addresses, config.shards, hard_end).await?;
    let start = Instant::now();
    let shared = Arc::new(Shared {
        client,
        recorder: recorder.clone(),
        shards: config.shards,
        workload: config.workload,
        seed: config.seed,
        round: config.round,
        start,
    });
    let rounds = config.duration.as_millis() as u64 / config.round.as_millis().max(1) as u64 + 1;
    if !workload::set_up(&shared, rounds).await {
        return Err("the cluster did not take the stock set-up in time".into());
    }
    let phase_start = Instant::now();
    hard_end = phase_start + config.duration + OVERTIME;
    let end = phase_start + config.duration;
    let nemesis = tokio::spawn(nemesis::run(
        cluster.clone(),
        recorder.clone(),
        schedule,
        phase_start,
        end,
    ));
    let mut tasks = Vec::new();
    for p in 0..config.clients {
        let mut worker = Worker::new(p as u64 + 1, shared.clone());
        tasks.push(tokio::spawn(async move {
            worker.run(end).await;
            worker
        }));
    }
    let mut workers = Vec::new();
    for t in tasks {
        workers.push(t.await.map_err(|e| format!("a client task failed: {e}"))?);
    }
    let faults = nemesis
        .await
        .map_err(|e| format!("the nemesis failed: {e}"))?;
    if !nemesis::heal_all(&cluster, hard_end).await {
        return Err("could not heal every partition".into());
    }
    // Every unknown operation once more, now that the cluster is whole.
    let retry_until = Instant::now() + Duration::from_secs(20);
    let retries: Vec<_> = workers
        .into_iter()
        .map(|mut w| {
            tokio::spawn(async move {
                w.retry_all_unknown(retry_until).await;
            })
        })
        .collect();
    for r in retries {
        let _ = r.await;
    }
    let _ = stop_leaders.send(());
    match leader_watch.await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => return Err(format!("{LEADERS_FILE}: {e}")),
        Err(e) => return Err(format!("the leader watch failed: {e}")),
    }
    recorder.flush().map_err(|e| e.to_string())?;
    let final_state = {
        let c = cluster.lock().await;
        collect_final_state(&c, (Instant::now() + CONVERGE_MAX).min(hard_end)).await?
    };
    holdfast_chaos::jsonl::write_file(&config.out.join("final.jsonl"), &final_state.replicas)
        .map_err(|e| e.to_string())?;
    Ok(RunOutput { faults })
}

async fn connect(addresses: &[String], shards: u32, until: Instant) -> Result<Client, String> {
    let options = ClientOptions {
        deadline: CALL_DEADLINE,
        attempt_timeout: ATTEMPT_TIMEOUT,
        shards: Some(shards),
        ..ClientOptions::default()
    };
    loop {
        match Client::connect(addresses, options.clone()).await {
            Ok(c) => return Ok(c),
            Err(e) if Instant::now() >= until => return Err(format!("no node answered: {e}")),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await, // retry interval
        }
    }
}

/// Waits until every node answers and, per shard, all report the same
/// applied index (equal to their commit) twice in a row, then dumps every
/// shard of every node; dumps at different indexes start the wait again.
async fn collect_final_state(c: &Cluster, until: Instant) -> Result<FinalState, String> {
    let mut last: Option<Vec<u64>> = None;
    loop {
        if Instant::now() >= until {
            return Err("replicas did not converge in time".into());
        }
        tokio::time::sleep(Duration::from_millis(300)).await; // polling interval
        let Some(applied) = agreed_applied(c).await else {
            last = None;
            continue;
        };
        if last.as_ref() != Some(&applied) {
            last = Some(applied);
            continue;
        }
        let mut replicas = Vec::new();
        let mut indexes_match = true;
        for i in 0..c.len() {
            let mut dumps = Vec::new();
            for shard in 0..c.shards {
                let d = c.dump(i, shard).await?;
                indexes_match &= d.applied == applied[shard as usize];
                dumps.push(d);
            }
            replicas.push(replica_state(i, dumps)?);
        }
        if indexes_match {
            return Ok(FinalState { replicas });
        }
        last = None;
    }
}

async fn agreed_applied(c: &Cluster) -> Option<Vec<u64>> {
    let mut agreed: Option<Vec<u64>> = None;
    for i in 0..c.len() {
        let s = c.status(i).await?;
        let applied: Vec<u64> = s.shards.iter().map(|s| s.applied).collect();
        if s.shards
            .iter()
            .any(|s| s.applied != s.commit || s.leader == 0)
        {
            return None;
        }
        match &agreed {
            Some(a) if a != &applied => return None,
            _ => agreed = Some(applied),
        }
    }
    agreed
}

fn replica_state(i: usize, dumps: Vec<DumpShardResponse>) -> Result<ReplicaState, String> {
    let mut state = ReplicaState {
        node: format!("n{}", i + 1),
        rows: Vec::new(),
        reservations: Vec::new(),
        shards: Vec::new(),
        applied_request_ids: None,
    };
    for d in dumps {
        state.shards.push(ShardDigest {
            shard: d.shard,
            applied_index: d.applied,
            digest: d.digest.iter().map(|b| format!("{b:02x}")).collect(),
        });
        state.rows.extend(d.rows.into_iter().map(|r| FinalRow {
            sku: r.sku,
            location: r.location,
            on_hand: r.on_hand,
            held: r.held,
            safety_stock: r.safety_stock,
            backorder_allowance: r.backorder_allowance,
        }));
        for r in d.reservations {
            let status = match r.state.as_str() {
                "pending" => ReservationStatus::Pending,
                "confirmed" => ReservationStatus::Confirmed,
                "released" => ReservationStatus::Released,
                "expired" => ReservationStatus::Expired,
                other => return Err(format!("n{}: reservation {} is {other:?}", i + 1, r.id)),
            };
            state.reservations.push(FinalReservation {
                id: r.id,
                state: status,
                owner: (!r.owner.is_empty()).then_some(r.owner),
                lines: r
                    .lines
                    .into_iter()
                    .map(|l| FinalLine {
                        sku: l.sku,
                        location: l.location,
                        quantity: l.quantity,
                        confirmed: l.confirmed,
                    })
                    .collect(),
            });
        }
    }
    Ok(state)
}
