//! Real `holdfast-server` processes on 127.0.0.1: reserve, `kill -9` the
//! leader of the shard, reserve again, restart the killed node, and compare
//! the state digests of all three replicas (design §1.4, §1.5). Every wait
//! polls with a deadline; child processes are killed and reaped on drop.

mod common;

use common::{reserve_request, retry, stock, ProcessCluster, DEADLINE};
use holdfast_server::pb::inventory as pb;
use std::time::{Duration, Instant};
use tonic::Code;

const SHARDS: u32 = 2;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_the_leader_reserve_again_restart_and_replicas_agree() {
    let mut c = ProcessCluster::start(3, SHARDS, &[]);
    let n2 = c.inventory(1);
    stock(&c, 1, "SKU-1", 100).await;
    // Reserve through node 2, whatever its role (followers forward).
    let first = retry("first reserve", || {
        let mut n2 = n2.clone();
        async move { n2.reserve(reserve_request("r-1", "SKU-1")).await }
    })
    .await
    .expect("reserved")
    .into_inner();
    assert_eq!(first.allocations.len(), 1);
    assert_eq!(first.allocations[0].available_after, 99);

    // Kill -9 the leader of the SKU's shard.
    let shard = holdfast_engine::shard_of("SKU-1", SHARDS) as usize;
    let status = c.status(1, false).await.expect("status");
    let leader = status.shards[shard].leader as usize;
    assert!(leader >= 1, "shard {shard} has a leader");
    c.kill(leader - 1);
    let survivor = if leader == 1 { 1 } else { 0 };
    let mut s = c.inventory(survivor);
    let second = retry("reserve after the kill", || {
        let mut s = s.clone();
        async move { s.reserve(reserve_request("r-2", "SKU-1")).await }
    })
    .await
    .expect("reserved on the new leader")
    .into_inner();
    assert_eq!(
        second.allocations[0].available_after, 98,
        "the first hold survived the kill (§1.4)"
    );
    // The retried first request is answered, not applied again (§1.3).
    let again = s
        .reserve(reserve_request("r-1", "SKU-1"))
        .await
        .expect("retry")
        .into_inner();
    assert_eq!(again.reservation_id, first.reservation_id);

    // Restart the killed node; all three converge to equal digests.
    c.spawn(leader - 1);
    let start = Instant::now();
    loop {
        let mut statuses = Vec::new();
        for i in 0..3 {
            if let Some(st) = c.status(i, true).await {
                statuses.push(st);
            }
        }
        let converged = statuses.len() == 3
            && (0..SHARDS as usize).all(|sh| {
                let first = &statuses[0].shards[sh];
                first.applied > 0
                    && statuses.iter().all(|st| {
                        st.shards[sh].applied == first.applied
                            && st.shards[sh].digest == first.digest
                    })
            });
        if converged {
            break;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "replicas did not converge: {statuses:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await; // polling interval
    }
    // A refusal reaches the client with its code and reason.
    let err = s
        .reserve(pb::ReserveRequest {
            lines: vec![pb::ReserveLine {
                sku: "SKU-1".into(),
                quantity: 1_000,
                location: Some("berlin".into()),
            }],
            ..reserve_request("r-3", "SKU-1")
        })
        .await
        .expect_err("more than the stock");
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().contains("available"), "{}", err.message());
}
