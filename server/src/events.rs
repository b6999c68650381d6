//! The change stream (design §3 "Events", `WatchEvents`).
//!
//! At apply, the driver turns each engine event into a wire [`pb::Event`]
//! with its names resolved (SKU, location, reservation id) and its place
//! `(shard, index, seq)` (`crate::event_codec`), and stages the encoded
//! bytes with the entry's
//! applied index (raft-store's `events` column). The bytes are a pure
//! function of the log, so every replica keeps the same events under the
//! same numbers, and a client can resume on any node.
//!
//! Serving reads the node's kept events after a cursor, up to the index
//! written to disk, and waits for the driver's next write when caught up
//! ([`EventLog`] carries one watch channel per shard).

use crate::pb::inventory as pb;
use crate::status;
use holdfast_raft_store::ShardStorage;
use prost::Message;
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio::sync::{mpsc, watch};
use tonic::{Code, Status};

/// Longest `sku_prefix` accepted, in bytes (a SKU's own limit).
const SKU_PREFIX_BYTES_MAX: usize = 256;
/// Events read from disk per step of one shard's stream.
const READ_EVENTS_MAX: usize = 512;
/// Events buffered towards one client before its shards' readers wait.
const STREAM_BUFFER: usize = 1_024;

/// Every shard's kept events and the signal that more were written: shared
/// by the driver (which publishes) and the services (which stream).
pub struct EventLog {
    shards: Vec<ShardEvents>,
}

struct ShardEvents {
    storage: ShardStorage,
    written: watch::Sender<u64>,
}

impl EventLog {
    /// The log over these shards' storages, in shard order.
    pub fn new(storages: Vec<ShardStorage>) -> Self {
        EventLog {
            shards: storages
                .into_iter()
                .map(|storage| {
                    let applied = storage.written_applied().unwrap_or(0);
                    ShardEvents {
                        storage,
                        written: watch::channel(applied).0,
                    }
                })
                .collect(),
        }
    }

    /// Tells waiting streams that `shard`'s events up to `applied` are on
    /// disk. Called by the driver after each write; cheap when unchanged.
    pub fn published(&self, shard: u32, applied: u64) {
        if let Some(s) = self.shards.get(shard as usize) {
            s.written.send_if_modified(|v| {
                let moved = applied > *v;
                if moved {
                    *v = applied;
                }
                moved
            });
        }
    }

    /// Starts streaming `plan` to a client: one reader task per watched
    /// shard, all feeding one bounded channel (a slow client slows its own
    /// readers, nobody else). The tasks end when the client goes away.
    pub fn stream(self: &Arc<Self>, plan: WatchPlan) -> mpsc::Receiver<Result<pb::Event, Status>> {
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        let filter = Arc::new(plan.filter);
        for (shard, start) in plan.starts {
            let log = self.clone();
            let (tx, filter) = (tx.clone(), filter.clone());
            tokio::spawn(async move {
                if let Err(status) = log.follow(shard, start, &filter, &tx).await {
                    let _ = tx.send(Err(status)).await;
                }
            });
        }
        rx
    }

    /// Streams one shard's events from `start` until the client is gone.
    /// Returns the error that ends the stream, if any.
    async fn follow(
        &self,
        shard: u32,
        start: Start,
        filter: &Filter,
        tx: &mpsc::Sender<Result<pb::Event, Status>>,
    ) -> Result<(), Status> {
        let ShardEvents { storage, written } = &self.shards[shard as usize];
        let mut written = written.subscribe();
        let store = |e: holdfast_raft_store::StoreError| {
            Status::internal(format!("shard {shard}: reading events: {e}"))
        };
        let (mut index, mut seq) = match start {
            Start::After(index, seq) => (index, seq),
            Start::Oldest => (
                storage.event_floor().map_err(store)?.saturating_sub(1),
                u32::MAX,
            ),
            Start::Latest => (storage.written_applied().map_err(store)?, u32::MAX),
        };
        loop {
            // The next event is (index, seq + 1), or (index + 1, 0) after a
            // whole entry: the floor must not be above it.
            let needed = if seq == u32::MAX { index + 1 } else { index };
            let read = storage
                .read_events(index, seq, READ_EVENTS_MAX)
                .map_err(store)?;
            if read.floor > needed.max(1) {
                return Err(not_kept(shard, index, seq, read.floor));
            }
            if read.events.is_empty() {
                // Caught up: wait until the driver writes past `up_to`.
                if written
                    .wait_for(|&applied| applied > read.up_to)
                    .await
                    .is_err()
                {
                    return Err(Status::unavailable("the node is stopping"));
                }
                continue;
            }
            for stored in read.events {
                (index, seq) = (stored.index, stored.seq);
                let event = pb::Event::decode(stored.body.as_slice()).map_err(|e| {
                    Status::internal(format!(
                        "shard {shard}: kept event {index}.{seq} does not decode: {e}"
                    ))
                })?;
                if filter.passes(&event) && tx.send(Ok(event)).await.is_err() {
                    return Ok(());
                }
            }
            if tx.is_closed() {
                return Ok(());
            }
        }
    }
}

fn not_kept(shard: u32, index: u64, seq: u32, floor: u64) -> Status {
    status::status(
        Code::OutOfRange,
        format!(
            "after: shard {shard} events after {index}.{seq} are not kept on this node \
             (its events begin at index {floor}); another node may have them"
        ),
        "EVENTS_NOT_KEPT",
        &[
            ("shard", shard.to_string()),
            ("first_index", floor.to_string()),
        ],
    )
}

/// Where one shard's stream starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// Strictly after this `(index, seq)`.
    After(u64, u32),
    /// From the oldest event kept.
    Oldest,
    /// From the next event written.
    Latest,
}

/// Which events a client wants.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    sku_prefix: String,
    kinds: Vec<i32>,
}

impl Filter {
    fn passes(&self, event: &pb::Event) -> bool {
        (self.kinds.is_empty() || self.kinds.contains(&event.kind))
            && (self.sku_prefix.is_empty()
                || (!event.sku.is_empty() && event.sku.starts_with(&self.sku_prefix)))
    }
}

/// A validated `WatchEvents` request: where each watched shard starts, and
/// the filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchPlan {
    /// Watched shards and their starts, in shard order.
    pub starts: BTreeMap<u32, Start>,
    /// What passes.
    pub filter: Filter,
}

impl WatchPlan {
    /// Checks a request against the API's bounds; each refusal names its
    /// field.
    pub fn from_request(r: &pb::WatchEventsRequest, shards: u32) -> Result<Self, Status> {
        let default_start = match pb::WatchStart::try_from(r.start) {
            Ok(pb::WatchStart::Latest) => Start::Latest,
            Ok(_) => Start::Oldest,
            Err(_) => return Err(status::invalid("start", "is not a WatchStart")),
        };
        let watched: Vec<u32> = if r.shards.is_empty() {
            (0..shards).collect()
        } else {
            r.shards.clone()
        };
        let mut starts = BTreeMap::new();
        for (i, &shard) in watched.iter().enumerate() {
            if shard >= shards {
                return Err(status::invalid(
                    &format!("shards[{i}]"),
                    &format!("names shard {shard}; this cluster has {shards}"),
                ));
            }
            if starts.insert(shard, default_start).is_some() {
                return Err(status::invalid(&format!("shards[{i}]"), "repeats a shard"));
            }
        }
        let mut cursored = Vec::new();
        for (i, cursor) in r.after.iter().enumerate() {
            let field = format!("after[{i}].shard");
            let Some(start) = starts.get_mut(&cursor.shard) else {
                return Err(status::invalid(&field, "names a shard that is not watched"));
            };
            if cursored.contains(&cursor.shard) {
                return Err(status::invalid(&field, "repeats a shard"));
            }
            cursored.push(cursor.shard);
            *start = Start::After(cursor.index, cursor.seq);
        }
        if r.sku_prefix.len() > SKU_PREFIX_BYTES_MAX {
            return Err(status::invalid("sku_prefix", "must be at most 256 bytes"));
        }
        for (i, &kind) in r.kinds.iter().enumerate() {
            if matches!(
                pb::EventKind::try_from(kind),
                Err(_) | Ok(pb::EventKind::Unspecified)
            ) {
                return Err(status::invalid(
                    &format!("kinds[{i}]"),
                    "is not an EventKind",
                ));
            }
        }
        Ok(WatchPlan {
            starts,
            filter: Filter {
                sku_prefix: r.sku_prefix.clone(),
                kinds: r.kinds.clone(),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> pb::WatchEventsRequest {
        pb::WatchEventsRequest::default()
    }

    #[test]
    fn every_shard_starts_oldest_unless_told() {
        let plan = WatchPlan::from_request(&request(), 3).unwrap();
        assert_eq!(
            plan.starts,
            BTreeMap::from([(0, Start::Oldest), (1, Start::Oldest), (2, Start::Oldest)])
        );
        let mut r = request();
        r.shards = vec![2, 0];
        r.start = pb::WatchStart::Latest as i32;
        r.after = vec![pb::EventCursor {
            shard: 2,
            index: 40,
            seq: 1,
        }];
        let plan = WatchPlan::from_request(&r, 3).unwrap();
        assert_eq!(
            plan.starts,
            BTreeMap::from([(0, Start::Latest), (2, Start::After(40, 1))])
        );
    }

    #[test]
    fn bad_requests_name_their_field() {
        let cursor = |shard| pb::EventCursor {
            shard,
            index: 1,
            seq: 0,
        };
        let cases: Vec<(pb::WatchEventsRequest, &str)> = vec![
            (
                pb::WatchEventsRequest {
                    shards: vec![3],
                    ..request()
                },
                "shards[0]",
            ),
            (
                pb::WatchEventsRequest {
                    shards: vec![1, 1],
                    ..request()
                },
                "shards[1]",
            ),
            (
                pb::WatchEventsRequest {
                    shards: vec![1],
                    after: vec![cursor(0)],
                    ..request()
                },
                "after[0].shard",
            ),
            (
                pb::WatchEventsRequest {
                    after: vec![cursor(0), cursor(0)],
                    ..request()
                },
                "after[1].shard",
            ),
            (
                pb::WatchEventsRequest {
                    sku_prefix: "x".repeat(257),
                    ..request()
                },
                "sku_prefix",
            ),
            (
                pb::WatchEventsRequest {
                    kinds: vec![pb::EventKind::Held as i32, 0],
                    ..request()
                },
                "kinds[1]",
            ),
            (
                pb::WatchEventsRequest {
                    start: 7,
                    ..request()
                },
                "start",
            ),
        ];
        for (r, field) in cases {
            let err = WatchPlan::from_request(&r, 3).unwrap_err();
            assert_eq!(err.code(), Code::InvalidArgument);
            assert!(
                err.message().starts_with(field),
                "{field}: {}",
                err.message()
            );
        }
    }

    #[test]
    fn filters_pass_by_kind_and_sku_prefix() {
        let event = |kind: pb::EventKind, sku: &str| pb::Event {
            kind: kind as i32,
            sku: sku.into(),
            ..Default::default()
        };
        let f = Filter {
            sku_prefix: "tee-".into(),
            kinds: vec![pb::EventKind::Held as i32],
        };
        assert!(f.passes(&event(pb::EventKind::Held, "tee-red")));
        assert!(!f.passes(&event(pb::EventKind::Held, "mug")));
        assert!(!f.passes(&event(pb::EventKind::Confirmed, "tee-red")));
        let any_sku = Filter {
            sku_prefix: "tee".into(),
            kinds: vec![],
        };
        assert!(!any_sku.passes(&event(pb::EventKind::LocationUpserted, "")));
        assert!(Filter::default().passes(&event(pb::EventKind::LocationUpserted, "")));
    }

    /// The kept bytes are the wire event, named: what a replica encodes is
    /// what a client decodes.
    #[test]
    fn an_engine_event_encodes_with_names_and_place() {
        use holdfast_engine::{Command, CommandKind, Engine, EngineConfig, RequestId, Stamp};
        let mut engine = Engine::new(EngineConfig::default());
        let mut events = Vec::new();
        let stamp = Stamp {
            index: 1,
            now_ms: 1_000,
        };
        let upsert = Command {
            request_id: RequestId(1),
            kind: CommandKind::UpsertLocation(holdfast_engine::UpsertLocation {
                location: "berlin".into(),
                region: "eu".into(),
                priority: 1,
            }),
        };
        engine.apply(stamp, &upsert, &mut events).expect("location");
        let adjust = Command {
            request_id: RequestId(2),
            kind: CommandKind::AdjustStock(holdfast_engine::AdjustStock {
                sku: "tee-red".into(),
                location: "berlin".into(),
                delta: 5,
                expected_on_hand: None,
            }),
        };
        events.clear();
        engine.apply(stamp, &adjust, &mut events).expect("stock");
        assert_eq!(events.len(), 1, "{events:?}");
        let mut bytes = Vec::new();
        crate::event_codec::encode_into(&engine, 3, 7, 0, 1_000, &events[0], &mut bytes);
        let wire = pb::Event::decode(bytes.as_slice()).unwrap();
        assert_eq!(wire.kind, pb::EventKind::Adjusted as i32);
        assert_eq!(
            (wire.sku.as_str(), wire.location.as_str()),
            ("tee-red", "berlin")
        );
        assert_eq!((wire.quantity, wire.on_hand_after), (5, 5));
        assert_eq!(
            wire.cursor,
            Some(pb::EventCursor {
                shard: 3,
                index: 7,
                seq: 0
            })
        );
        assert_eq!(wire.at_ms, 1_000);
    }
}
