//! `WatchEvents` at the edge of what a node keeps, with a real process
//! whose event retention is tiny (`raft.event_retention_entries = 10`):
//! a cursor behind the floor is refused with `OUT_OF_RANGE` /
//! `EVENTS_NOT_KEPT` naming where the node's events begin, and a stream
//! from that floor reads on without a gap.

mod common;

use common::{retry, stock, ProcessCluster};
use holdfast_server::pb::inventory as pb;
use tonic::Code;
use tonic_types::StatusExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cursor_behind_the_kept_events_is_refused_with_where_they_begin() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("holdfast.toml");
    std::fs::write(&config, "[raft]\nevent_retention_entries = 10\n").expect("config");
    let config = config.to_str().expect("utf-8 path").to_string();
    let c = ProcessCluster::start(1, 1, &["--config", &config]);
    stock(&c, 0, "SKU-E", 1).await;
    // Thirty more entries, each with one event: the floor passes index 1.
    let node = c.inventory(0);
    for i in 0..30 {
        retry("adjust", || {
            let mut n = node.clone();
            async move {
                n.adjust_stock(pb::AdjustStockRequest {
                    request_id: format!("adjust-{i}"),
                    sku: "SKU-E".into(),
                    location: "berlin".into(),
                    delta: 1,
                    expected_on_hand: None,
                })
                .await
            }
        })
        .await
        .expect("adjusted");
    }
    let mut node = c.inventory(0);
    let behind = pb::WatchEventsRequest {
        after: vec![pb::EventCursor {
            shard: 0,
            index: 1,
            seq: 0,
        }],
        ..Default::default()
    };
    let refused = match node.watch_events(behind).await {
        Err(status) => status,
        Ok(stream) => stream
            .into_inner()
            .message()
            .await
            .expect_err("the stream is refused"),
    };
    assert_eq!(refused.code(), Code::OutOfRange, "{refused:?}");
    let info = refused.get_details_error_info().expect("error info");
    assert_eq!(info.reason, "EVENTS_NOT_KEPT");
    let first: u64 = info.metadata["first_index"].parse().expect("a number");
    assert!(first > 2, "the floor rose: {info:?}");

    // From the floor on, the node streams what it keeps, in order.
    let from_floor = pb::WatchEventsRequest {
        after: vec![pb::EventCursor {
            shard: 0,
            index: first - 1,
            seq: u32::MAX,
        }],
        ..Default::default()
    };
    let mut stream = node
        .watch_events(from_floor)
        .await
        .expect("stream")
        .into_inner();
    let mut last = (first - 1, u32::MAX);
    for _ in 0..5 {
        let event = stream.message().await.expect("event").expect("open");
        let cursor = event.cursor.expect("cursor");
        assert!(cursor.index >= first, "{cursor:?} before the floor {first}");
        assert!(
            last.1 == u32::MAX && cursor.index > last.0 || (cursor.index, cursor.seq) > last,
            "{cursor:?} not after {last:?}"
        );
        last = (cursor.index, cursor.seq);
        assert_eq!(event.kind, pb::EventKind::Adjusted as i32, "{event:?}");
        assert_eq!(event.sku, "SKU-E");
    }
}
