//! Fault injection for chaos tests, with real processes: a node started
//! without `--chaos-faults` refuses to be partitioned; a shard leader cut
//! off from both followers loses the shard to them while the majority goes
//! on serving; after healing, every replica dumps the same state.

mod common;

use common::{agreed_leader, partition, reserve_request, retry, stock, ProcessCluster, DEADLINE};
use holdfast_server::pb::internal::{DumpShardRequest, SetPartitionRequest};
use std::time::{Duration, Instant};
use tonic::Code;

const SHARDS: u32 = 2;
const SKU: &str = "SKU-P";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_without_chaos_faults_refuses_partitions() {
    let c = ProcessCluster::start(1, 1, &[]);
    let status = retry("set partition", || {
        let mut admin = c.admin(0);
        async move {
            admin
                .set_partition(SetPartitionRequest {
                    blocked_nodes: vec![2],
                })
                .await
        }
    })
    .await
    .expect_err("refused");
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert!(status.message().contains("--chaos-faults"), "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_isolated_leader_loses_its_shard_and_replicas_agree_after_healing() {
    let c = ProcessCluster::start(3, SHARDS, &["--chaos-faults"]);
    stock(&c, 0, SKU, 100).await;
    let shard = holdfast_engine::shard_of(SKU, SHARDS);
    let old = agreed_leader(&c, shard, &[0, 1, 2], None).await;
    let others: Vec<usize> = (0..3).filter(|&i| i != old).collect();
    // Cut the leader off from both followers, both directions.
    let ids: Vec<u64> = others.iter().map(|&i| i as u64 + 1).collect();
    partition(&c, old, &ids).await;
    for &i in &others {
        partition(&c, i, &[old as u64 + 1]).await;
    }
    // The majority elects a new leader and serves.
    let new = agreed_leader(&c, shard, &others, Some(old)).await;
    assert_ne!(new, old);
    let reserved = retry("reserve on the majority", || {
        let mut node = c.inventory(others[0]);
        async move { node.reserve(reserve_request("during-partition", SKU)).await }
    })
    .await
    .expect("the majority serves");
    // The isolated old leader cannot commit: it answers with an error,
    // never a success (it may not yet know it lost the lead).
    let mut isolated = c.inventory(old);
    let mut request = tonic::Request::new(reserve_request("on-the-minority", SKU));
    request.set_timeout(Duration::from_millis(1_500));
    let minority = isolated.reserve(request).await;
    assert!(
        minority.is_err(),
        "the minority acknowledged a write: {minority:?}"
    );
    // Heal, and every replica converges on the same state.
    for i in 0..3 {
        partition(&c, i, &[]).await;
    }
    let start = Instant::now();
    loop {
        let mut dumps = Vec::new();
        for i in 0..3 {
            if let Ok(d) = c.admin(i).dump_shard(DumpShardRequest { shard }).await {
                dumps.push(d.into_inner());
            }
        }
        if dumps.len() == 3 && dumps.iter().all(|d| d == &dumps[0]) {
            let d = &dumps[0];
            let id = &reserved.get_ref().reservation_id;
            assert!(
                d.reservations
                    .iter()
                    .any(|r| &r.id == id && r.state == "pending"),
                "the acknowledged reservation {id} is in every replica's state"
            );
            let row = d.rows.iter().find(|r| r.sku == SKU).expect("row");
            let pending: i64 = d
                .reservations
                .iter()
                .filter(|r| r.state == "pending")
                .flat_map(|r| r.lines.iter().map(|l| l.quantity))
                .sum();
            assert_eq!(row.held, pending, "held is the sum of pending holds");
            return;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "replicas did not converge after healing"
        );
        tokio::time::sleep(Duration::from_millis(50)).await; // polling interval
    }
}
