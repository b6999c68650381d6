//! `WatchEvents` as a resumable stream.
//!
//! The client remembers, per shard, the position of the last event it
//! handed out, and when the node it streams from fails (killed, stopping,
//! partitioned, or no longer keeping the events it needs) it opens the
//! stream again on another node *after* those positions. Replicas number
//! every event alike, so what arrives is gap-free and without duplicates
//! across the switch.

use crate::error::{self, Disposition, Error};
use crate::pb::inventory as pb;
use crate::pb::inventory::inventory_client::InventoryClient;
use crate::retry::{Backoff, RetryPolicy};
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_stream::Stream;

/// One ledger change, as the server streams it (see the proto's `Event`).
pub type Event = pb::Event;
/// Kinds of ledger changes.
pub type EventKind = pb::EventKind;

/// What to watch (`WatchEvents`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WatchEvents {
    /// Shards to watch; empty watches every shard.
    pub shards: Vec<u32>,
    /// Resume points: events strictly after each `(shard, index, seq)`.
    pub after: Vec<(u32, u64, u32)>,
    /// Shards without a resume point start at the next event written
    /// instead of the oldest kept. Until such a shard's first event
    /// arrives, a reconnection starts it at the latest again (the client
    /// has no position to resume from), so events written while the
    /// client reconnects may be missed for it; after its first event, never.
    pub from_latest: bool,
    /// Only events of SKUs starting with this prefix.
    pub sku_prefix: String,
    /// Only these kinds; empty passes every kind.
    pub kinds: Vec<EventKind>,
}

/// Events in order per shard, until dropped. Yields an error (and then
/// ends) only when reconnecting failed `attempts_max` times in a row, or
/// the server refused the request itself (e.g. `INVALID_ARGUMENT`).
pub struct EventStream {
    events: mpsc::Receiver<Result<Event, Error>>,
    task: JoinHandle<()>,
    node: Arc<Mutex<Option<String>>>,
}

impl EventStream {
    /// The node the stream is reading from now (`host:port`), or was last
    /// trying: for logs, and for tests that fail that node on purpose.
    pub fn node(&self) -> Option<String> {
        self.node.lock().clone()
    }
}

impl Stream for EventStream {
    type Item = Result<Event, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.events.poll_recv(cx)
    }
}

impl Drop for EventStream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// How the stream finds a node to (re)connect to, and learns of failures.
pub(crate) trait Nodes: Send + Sync + 'static {
    /// A node to stream from, avoiding `avoid` if possible: its index and
    /// channel.
    fn pick(&self, avoid: Option<usize>) -> (usize, tonic::transport::Channel);
    /// The address of node `index`.
    fn address(&self, index: usize) -> String;
    /// The node `index` failed in the way `disposition` says.
    fn failed(&self, index: usize, disposition: &Disposition);
}

/// Starts the stream. `policy.attempts_max` consecutive failed connections
/// (with its backoff between them) end it with the last error.
pub(crate) fn start(nodes: Arc<dyn Nodes>, watch: WatchEvents, policy: RetryPolicy) -> EventStream {
    let (tx, events) = mpsc::channel(256);
    let node = Arc::new(Mutex::new(None));
    let current = node.clone();
    let task = tokio::spawn(async move {
        let mut backoff = Backoff::new(policy, fastrand::Rng::new());
        let mut positions: BTreeMap<u32, (u64, u32)> = watch
            .after
            .iter()
            .map(|&(shard, index, seq)| (shard, (index, seq)))
            .collect();
        let mut failures = 0u32;
        let mut avoid = None;
        loop {
            let (index, channel) = nodes.pick(avoid);
            *current.lock() = Some(nodes.address(index));
            let request = request_for(&watch, &positions);
            let status = match InventoryClient::new(channel).watch_events(request).await {
                Ok(response) => {
                    let mut stream = response.into_inner();
                    loop {
                        match stream.message().await {
                            Ok(Some(event)) => {
                                if failures > 0 {
                                    failures = 0;
                                    backoff = Backoff::new(policy, fastrand::Rng::new());
                                }
                                if let Some(c) = &event.cursor {
                                    positions.insert(c.shard, (c.index, c.seq));
                                }
                                if tx.send(Ok(event)).await.is_err() {
                                    return;
                                }
                            }
                            Ok(None) => {
                                break tonic::Status::unavailable("the node ended the stream")
                            }
                            Err(status) => break status,
                        }
                    }
                }
                Err(status) => status,
            };
            let error = Error::from_status(&status, None);
            let disposition = resume_disposition(&status, &error);
            failures += 1;
            if disposition == Disposition::Final || failures >= policy.attempts_max {
                let _ = tx.send(Err(error)).await;
                return;
            }
            nodes.failed(index, &disposition);
            avoid = Some(index);
            let pause = backoff
                .next_pause(Duration::MAX)
                .unwrap_or(Duration::from_millis(100));
            tokio::time::sleep(pause).await; // backoff between reconnections
        }
    });
    EventStream { events, task, node }
}

/// Whether a failed stream is worth opening again elsewhere: everything a
/// unary call would retry, and also `OUT_OF_RANGE` (this node does not keep
/// the events; another may).
fn resume_disposition(status: &tonic::Status, error: &Error) -> Disposition {
    match status.code() {
        tonic::Code::OutOfRange | tonic::Code::Unavailable | tonic::Code::Internal => {
            Disposition::NodeDown
        }
        _ => error::disposition(status, error),
    }
}

fn request_for(
    watch: &WatchEvents,
    positions: &BTreeMap<u32, (u64, u32)>,
) -> pb::WatchEventsRequest {
    let start = if watch.from_latest {
        pb::WatchStart::Latest
    } else {
        pb::WatchStart::Oldest
    };
    pb::WatchEventsRequest {
        shards: watch.shards.clone(),
        after: positions
            .iter()
            .map(|(&shard, &(index, seq))| pb::EventCursor { shard, index, seq })
            .collect(),
        start: start as i32,
        sku_prefix: watch.sku_prefix.clone(),
        kinds: watch.kinds.iter().map(|&k| k as i32).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reconnection resumes every shard after the last event handed out,
    /// keeping the caller's filter and the shards it asked for.
    #[test]
    fn reconnection_resumes_after_the_last_positions() {
        let watch = WatchEvents {
            shards: vec![1, 3],
            after: vec![(3, 9, 0)],
            from_latest: true,
            sku_prefix: "tee-".into(),
            kinds: vec![EventKind::Held],
        };
        let positions = BTreeMap::from([(1, (40, 2)), (3, (12, u32::MAX))]);
        let r = request_for(&watch, &positions);
        assert_eq!(r.shards, vec![1, 3]);
        assert_eq!(
            r.after,
            vec![
                pb::EventCursor {
                    shard: 1,
                    index: 40,
                    seq: 2
                },
                pb::EventCursor {
                    shard: 3,
                    index: 12,
                    seq: u32::MAX
                },
            ]
        );
        assert_eq!(r.start, pb::WatchStart::Latest as i32);
        assert_eq!(r.sku_prefix, "tee-");
        assert_eq!(r.kinds, vec![EventKind::Held as i32]);
    }

    /// A refused request ends the stream; a lost node or a node without the
    /// events moves it elsewhere.
    #[test]
    fn only_a_refusal_ends_the_stream() {
        let cases = [
            (
                tonic::Status::invalid_argument("shards[0] names shard 9"),
                true,
            ),
            (tonic::Status::out_of_range("events not kept"), false),
            (tonic::Status::unavailable("stopping"), false),
            (tonic::Status::unknown("h2 protocol error"), false),
        ];
        for (status, ends) in cases {
            let error = Error::from_status(&status, None);
            let d = resume_disposition(&status, &error);
            assert_eq!(d == Disposition::Final, ends, "{status:?}");
        }
    }
}
