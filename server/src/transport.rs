//! Raft traffic between nodes over gRPC (`holdfast.internal.v1.RaftTransport`).
//!
//! The unit of work is a `RaftBatch`: every Raft message one node has queued
//! for one peer at the moment the peer's stream is ready, packed together
//! (capped at [`BATCH_BYTES_MAX`]) with each message protobuf-encoded as
//! opaque bytes. Each ordered pair of nodes shares one long-lived
//! bidirectional `Exchange` stream: batches go out, one `RaftAck` per batch
//! comes back (liveness and metrics only; Raft retransmits what is lost, so
//! nothing here retries a message).
//!
//! Threads:
//! - Sending: the driver thread calls [`GrpcTransport::send`], which only
//!   does `try_send` into a bounded per-peer queue and never blocks or awaits;
//!   a full queue drops the message. One tokio task per peer owns that
//!   queue: it connects, streams batches, drains the acks, and on any error
//!   backs off ([`BACKOFF_MS_MIN`] doubling to [`BACKOFF_MS_MAX`]), discards
//!   what was queued meanwhile (stale by then) and reconnects.
//! - Receiving: [`RaftTransportService`] runs on the tokio runtime; per
//!   incoming stream one task decodes each batch and hands its messages to
//!   the node's inbox without blocking ([`RaftInbox::deliver`]); a full inbox
//!   drops the message.
//!
//! Snapshots (`MsgSnapshot`) never ride in a batch: `send` hands each to
//! its own task, which streams it in chunks over a `SendSnapshot` call on
//! its own connection (module `snapshot`), at most one per (peer, shard) at
//! a time. Its outcome goes back to the driver through the
//! [`TransportReporter`] the node attaches ([`Transport::attach`]), as
//! [`Inbound::SnapshotStatus`]; a failed stream reports
//! [`Inbound::Unreachable`] for the shards whose messages it may have lost.

mod snapshot;

pub use snapshot::{
    SNAPSHOT_BYTES_MAX_DEFAULT, SNAPSHOT_CHUNK_BYTES_DEFAULT, SNAPSHOT_CHUNK_BYTES_MAX,
    SNAPSHOT_CHUNK_WAIT_MS_MAX, SNAPSHOT_RECEIVES_MAX, SNAPSHOT_SEND_BYTES_PER_S_MIN,
    SNAPSHOT_SEND_TIMEOUT_MS_BASE,
};

use crate::faults::Faults;
use crate::node::messages::Inbound;
use crate::node::{NodeHandle, Transport, TransportReporter};
use crate::pb::internal::raft_transport_client::RaftTransportClient;
use crate::pb::internal::raft_transport_server::{RaftTransport, RaftTransportServer};
use crate::pb::internal::{RaftAck, RaftBatch, RaftEnvelope, SnapshotChunk, SnapshotDone};
use raft::eraftpb::{Message, MessageType};
use snapshot::SnapshotSender;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::sync::Semaphore;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Endpoint;
use tonic::{Request, Response, Status, Streaming};

/// Raft messages queued per peer at most. Several driver iterations of
/// appends and heartbeats for every shard fit; beyond it the peer (or the
/// link) is not keeping up and dropping is cheaper than buffering, since
/// Raft retransmits.
pub const PEER_QUEUE_MESSAGES_MAX: usize = 8_192;
/// Encoded bytes per batch at most (a single larger message goes alone):
/// big enough to carry a driver iteration's appends in one frame, small
/// enough that one batch does not hold the stream for long.
pub const BATCH_BYTES_MAX: usize = 4 << 20;
/// Largest gRPC message (one `RaftBatch`) a node accepts, in bytes: bounds
/// the memory a peer can make us allocate per frame.
pub const FRAME_BYTES_MAX: usize = 16 << 20;
/// Largest single encoded Raft message sent in a batch, in bytes: a frame's
/// limit less 1 MiB of headroom for the batch and envelope fields. Snapshots
/// go their own way in chunks; any other larger message is dropped with a
/// warning rather than breaking the stream.
pub const MESSAGE_BYTES_MAX: usize = FRAME_BYTES_MAX - (1 << 20);
/// Largest ack accepted, in bytes (an ack is one varint).
pub const ACK_BYTES_MAX: usize = 1 << 10;
/// Time to establish a TCP connection to a peer: well under an election
/// timeout, so an unreachable peer is retried promptly.
pub const CONNECT_TIMEOUT_MS: u64 = 500;
/// Time for a connected peer to answer the opening of a stream: a peer
/// that accepts connections but does not serve is treated as down.
pub const OPEN_TIMEOUT_MS: u64 = 1_000;
/// First wait before reconnecting after a failure.
pub const BACKOFF_MS_MIN: u64 = 50;
/// Longest wait between reconnection attempts: a restarted peer hears from
/// us within about a second.
pub const BACKOFF_MS_MAX: u64 = 1_000;
/// HTTP/2 ping interval on a peer connection: detects a silently dead link
/// (no RST) without waiting for TCP's minutes-long retransmission timeout.
pub const KEEPALIVE_INTERVAL_MS: u64 = 1_000;
/// How long a ping may go unanswered before the connection is closed.
pub const KEEPALIVE_TIMEOUT_MS: u64 = 2_000;
/// Batches handed to a stream but not yet written: one being written, one
/// ready; the rest wait in the peer queue where they can be dropped.
pub const BATCHES_IN_FLIGHT_MAX: usize = 2;
/// Acks a receiving stream buffers before it stops reading batches (a peer
/// that does not read its acks gets back-pressure, not unbounded memory).
pub const ACKS_BUFFERED_MAX: usize = 64;

/// What the sending side has done, for metrics. One set per transport,
/// summed over peers; every field only grows.
#[derive(Debug, Default)]
pub struct TransportCounters {
    /// Batches handed to a peer's stream.
    pub batches_sent: AtomicU64,
    /// Messages in those batches.
    pub messages_sent: AtomicU64,
    /// Messages never sent: the peer's queue was full, the recipient is not
    /// a peer, or the message did not encode or is larger than
    /// [`MESSAGE_BYTES_MAX`].
    pub messages_dropped: AtomicU64,
    /// Queued messages thrown away because the peer was unreachable (stale
    /// by the time it comes back).
    pub messages_discarded: AtomicU64,
    /// Stream failures followed by a reconnection attempt (a first connection
    /// that fails counts too).
    pub reconnects: AtomicU64,
    /// Acks received from peers.
    pub acks_received: AtomicU64,
    /// Snapshots a peer received whole (and reported `Finish`).
    pub snapshots_sent: AtomicU64,
    /// Bytes of snapshot data in those.
    pub snapshot_bytes_sent: AtomicU64,
    /// Snapshot sends that failed or timed out (reported `Failure`).
    pub snapshots_failed: AtomicU64,
    /// Snapshots never started: one to the same peer and shard was still
    /// sending, or the recipient has no peer address.
    pub snapshots_dropped: AtomicU64,
    /// `Unreachable` reports posted to the driver (one per shard and failed
    /// stream or discard).
    pub unreachable_reports: AtomicU64,
}

/// Who this node is: traffic naming another cluster or node is refused.
#[derive(Clone, Debug)]
struct Identity {
    self_id: u64,
    cluster_id: u64,
    /// Peers cut off by fault injection (chaos tests).
    faults: Arc<Faults>,
}

impl Identity {
    /// Whether `what` from node `from`, for node `to_node` of cluster
    /// `cluster_id`, is meant for this node; the refusal names both sides.
    fn check(&self, what: &str, from: u64, cluster_id: u64, to_node: u64) -> Result<(), Status> {
        if cluster_id != self.cluster_id {
            return Err(Status::failed_precondition(format!(
                "{what} from node {from} is for cluster {cluster_id}, this node is in cluster {}",
                self.cluster_id
            )));
        }
        if to_node != self.self_id {
            return Err(Status::failed_precondition(format!(
                "{what} from node {from} is for node {to_node}, this is node {}",
                self.self_id
            )));
        }
        if self.faults.is_blocked(from) {
            return Err(Status::unavailable(format!(
                "{what} from node {from} refused: partitioned by fault injection"
            )));
        }
        Ok(())
    }
}

fn bump(counter: &AtomicU64, by: u64) {
    counter.fetch_add(by, Ordering::Relaxed);
}

/// One message waiting in a peer queue; encoded by the peer's task, off the
/// driver thread.
struct Outgoing {
    shard: u32,
    message: Message,
}

/// The gRPC [`Transport`]: one queue and one streaming task per peer, and
/// a task per snapshot being sent. Dropping it closes the queues, and each
/// peer task ends (snapshot sends in flight run to their end).
pub struct GrpcTransport {
    /// Peers cut off by fault injection (chaos tests).
    faults: Arc<Faults>,
    queues: BTreeMap<u64, mpsc::Sender<Outgoing>>,
    snapshots: SnapshotSender,
    /// Set once by [`Transport::attach`]; shared with every task.
    reporter: Arc<OnceLock<TransportReporter>>,
    counters: Arc<TransportCounters>,
}

impl GrpcTransport {
    /// Starts one sending task per member of `peers` (id → `host:port`)
    /// other than `self_id`, on `runtime`. Connections are made in the
    /// background; nothing here waits for a peer.
    pub fn start(
        self_id: u64,
        cluster_id: u64,
        peers: BTreeMap<u64, String>,
        runtime: tokio::runtime::Handle,
    ) -> GrpcTransport {
        let counters = Arc::new(TransportCounters::default());
        let reporter = Arc::new(OnceLock::new());
        let identity = Identity {
            self_id,
            cluster_id,
            faults: Arc::default(),
        };
        let mut snapshots = SnapshotSender::new(
            identity,
            runtime.clone(),
            reporter.clone(),
            counters.clone(),
        );
        let mut queues = BTreeMap::new();
        for (peer_id, address) in peers {
            if peer_id == self_id {
                continue;
            }
            let (tx, rx) = mpsc::channel(PEER_QUEUE_MESSAGES_MAX);
            queues.insert(peer_id, tx);
            let endpoint = match peer_endpoint(&address) {
                Ok(endpoint) => endpoint,
                Err(error) => {
                    // The task never starts, so the queue is closed and
                    // every message to this peer counts as dropped.
                    tracing::error!(
                        peer = peer_id,
                        %address,
                        %error,
                        "invalid peer address; raft messages to it are dropped"
                    );
                    continue;
                }
            };
            snapshots.add_peer(peer_id, endpoint.clone());
            let link = PeerLink {
                self_id,
                peer_id,
                cluster_id,
                endpoint,
                reporter: reporter.clone(),
                counters: counters.clone(),
            };
            runtime.spawn(link.run(rx));
        }
        GrpcTransport {
            faults: Arc::default(),
            queues,
            snapshots,
            reporter,
            counters,
        }
    }

    /// Drops every message to a peer `faults` blocks (chaos tests; see
    /// [`crate::faults`]).
    pub fn with_faults(mut self, faults: Arc<Faults>) -> Self {
        self.faults = faults;
        self
    }

    /// Sends snapshot data in chunks of `bytes` (clamped to
    /// 1..=[`SNAPSHOT_CHUNK_BYTES_MAX`]) instead of
    /// [`SNAPSHOT_CHUNK_BYTES_DEFAULT`]: tests use small chunks so that a
    /// small snapshot still takes many.
    pub fn with_snapshot_chunk_bytes(mut self, bytes: usize) -> Self {
        self.snapshots.chunk_bytes = bytes.clamp(1, SNAPSHOT_CHUNK_BYTES_MAX);
        self
    }

    /// The transport's counters, for metrics and tests.
    pub fn counters(&self) -> Arc<TransportCounters> {
        self.counters.clone()
    }
}

impl Transport for GrpcTransport {
    fn send(&self, shard: u32, messages: Vec<Message>) {
        for message in messages {
            if self.faults.is_blocked(message.to) {
                bump(&self.counters.messages_dropped, 1);
                if message.get_msg_type() == MessageType::MsgSnapshot {
                    if let Some(reporter) = self.reporter.get() {
                        reporter.snapshot_status(shard, message.to, false);
                    }
                }
                continue;
            }
            if message.get_msg_type() == MessageType::MsgSnapshot {
                self.snapshots.start(shard, message);
                continue;
            }
            let queued = match self.queues.get(&message.to) {
                Some(queue) => queue.try_send(Outgoing { shard, message }).is_ok(),
                None => {
                    tracing::trace!(
                        shard,
                        to = message.to,
                        "raft message for a non-peer dropped"
                    );
                    false
                }
            };
            if !queued {
                bump(&self.counters.messages_dropped, 1);
            }
        }
    }

    fn attach(&mut self, reporter: TransportReporter) {
        if self.reporter.set(reporter).is_err() {
            tracing::warn!("transport attached twice; keeping the first node's reporter");
        }
    }
}

/// The endpoint of a peer at `host:port`, with our connection settings.
fn peer_endpoint(address: &str) -> Result<Endpoint, tonic::transport::Error> {
    Ok(Endpoint::from_shared(format!("http://{address}"))?
        .connect_timeout(Duration::from_millis(CONNECT_TIMEOUT_MS))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_millis(KEEPALIVE_INTERVAL_MS))
        .keep_alive_timeout(Duration::from_millis(KEEPALIVE_TIMEOUT_MS))
        .keep_alive_while_idle(true))
}

/// How a stream to a peer ended.
enum StreamEnd {
    /// The transport was dropped: the task ends.
    TransportDropped,
    /// Connecting or streaming failed; `acked` says whether the peer acked
    /// anything first (the link worked, so backoff restarts from the minimum).
    Failed { why: String, acked: bool },
}

/// The state of a link, for logging on changes only.
#[derive(Clone, Copy, PartialEq, Eq)]
enum LinkState {
    Starting,
    Up,
    Down,
}

/// What a peer's task needs to reach it.
struct PeerLink {
    self_id: u64,
    peer_id: u64,
    cluster_id: u64,
    endpoint: Endpoint,
    reporter: Arc<OnceLock<TransportReporter>>,
    counters: Arc<TransportCounters>,
}

impl PeerLink {
    /// The peer's task: stream, and on failure back off, discard what went
    /// stale, and reconnect, until the transport is dropped.
    async fn run(self, mut queue: mpsc::Receiver<Outgoing>) {
        let mut batcher = Batcher::default();
        let mut backoff_ms = BACKOFF_MS_MIN;
        let mut state = LinkState::Starting;
        loop {
            let (why, acked) = match self.exchange(&mut queue, &mut batcher, &mut state).await {
                StreamEnd::TransportDropped => return,
                StreamEnd::Failed { why, acked } => (why, acked),
            };
            let peer = self.peer_id;
            match state {
                LinkState::Up => {
                    tracing::warn!(peer, error = %why, "raft stream to peer lost; reconnecting")
                }
                LinkState::Starting => {
                    tracing::info!(peer, error = %why, "raft peer not reachable yet; retrying")
                }
                LinkState::Down => {
                    tracing::debug!(peer, error = %why, "raft peer still not reachable")
                }
            }
            state = LinkState::Down;
            if acked {
                backoff_ms = BACKOFF_MS_MIN;
            }
            bump(&self.counters.reconnects, 1);
            tokio::time::sleep(Duration::from_millis(backoff_ms)).await;
            backoff_ms = (backoff_ms * 2).min(BACKOFF_MS_MAX);
            if !self.discard_stale(&mut queue, &mut batcher) {
                return;
            }
            self.report_unreachable(std::mem::take(&mut batcher.shards));
        }
    }

    /// Throws away what was queued while the peer was unreachable, noting
    /// the shards it was for in `batcher.shards`. `false`: the transport
    /// was dropped.
    fn discard_stale(&self, queue: &mut mpsc::Receiver<Outgoing>, batcher: &mut Batcher) -> bool {
        let mut discarded = 0;
        if let Some(envelope) = batcher.carry.take() {
            batcher.shards.insert(envelope.shard);
            discarded += 1;
        }
        let open = loop {
            match queue.try_recv() {
                Ok(outgoing) => {
                    batcher.shards.insert(outgoing.shard);
                    discarded += 1;
                }
                Err(mpsc::error::TryRecvError::Empty) => break true,
                Err(mpsc::error::TryRecvError::Disconnected) => break false,
            }
        };
        bump(&self.counters.messages_discarded, discarded);
        open
    }

    /// Tells the driver that messages of `shards` to this peer may be lost
    /// (sent on a stream that failed, or discarded), so Raft probes the
    /// peer instead of streaming appends into the void.
    fn report_unreachable(&self, shards: BTreeSet<u32>) {
        let Some(reporter) = self.reporter.get() else {
            return;
        };
        for shard in shards {
            if reporter.unreachable(shard, self.peer_id) {
                bump(&self.counters.unreachable_reports, 1);
            }
        }
    }

    /// Connects, opens `Exchange`, and streams batches from `queue` while
    /// draining acks, until either side fails or the transport is dropped.
    async fn exchange(
        &self,
        queue: &mut mpsc::Receiver<Outgoing>,
        batcher: &mut Batcher,
        state: &mut LinkState,
    ) -> StreamEnd {
        let failed = |why: String| StreamEnd::Failed { why, acked: false };
        let channel = match self.endpoint.connect().await {
            Ok(channel) => channel,
            Err(error) => return failed(format!("connect: {error}")),
        };
        let mut client = RaftTransportClient::new(channel)
            .max_encoding_message_size(FRAME_BYTES_MAX)
            .max_decoding_message_size(ACK_BYTES_MAX);
        let (batches_tx, batches_rx) = mpsc::channel(BATCHES_IN_FLIGHT_MAX);
        let open = client.exchange(ReceiverStream::new(batches_rx));
        let mut acks =
            match tokio::time::timeout(Duration::from_millis(OPEN_TIMEOUT_MS), open).await {
                Ok(Ok(response)) => response.into_inner(),
                Ok(Err(status)) => return failed(format!("open stream: {status}")),
                Err(_) => return failed(format!("open stream: no answer in {OPEN_TIMEOUT_MS} ms")),
            };
        let mut acked = false;
        let send = async {
            loop {
                let Some(messages) = batcher.next(queue, &self.counters).await else {
                    return StreamEnd::TransportDropped;
                };
                let count = messages.len() as u64;
                let batch = RaftBatch {
                    from_node: self.self_id,
                    to_node: self.peer_id,
                    cluster_id: self.cluster_id,
                    messages,
                };
                if batches_tx.send(batch).await.is_err() {
                    return failed("request stream closed".to_string());
                }
                bump(&self.counters.batches_sent, 1);
                bump(&self.counters.messages_sent, count);
            }
        };
        let drain = async {
            loop {
                match acks.message().await {
                    Ok(Some(_)) => {
                        bump(&self.counters.acks_received, 1);
                        if *state != LinkState::Up {
                            tracing::info!(peer = self.peer_id, "raft stream to peer up");
                            *state = LinkState::Up;
                        }
                        acked = true;
                    }
                    Ok(None) => return "peer ended the stream".to_string(),
                    Err(status) => return format!("stream: {status}"),
                }
            }
        };
        tokio::select! {
            end = send => end,
            why = drain => StreamEnd::Failed { why, acked },
        }
    }
}

/// Packs queued messages into batches. A message that would overflow a
/// batch is carried over to start the next one.
#[derive(Default)]
struct Batcher {
    carry: Option<RaftEnvelope>,
    /// Shards whose messages were handed to the current stream (or
    /// discarded) since the last unreachable report: HTTP/2 says nothing
    /// about which of them arrived, so when the stream fails all are at
    /// risk. At most one entry per shard.
    shards: BTreeSet<u32>,
}

impl Batcher {
    /// Waits for a first message, then takes every message already queued,
    /// up to [`BATCH_BYTES_MAX`] encoded bytes. `None`: the transport was
    /// dropped. Cancel-safe: the only await is the queue's `recv`, and no
    /// message is held across it.
    async fn next(
        &mut self,
        queue: &mut mpsc::Receiver<Outgoing>,
        counters: &TransportCounters,
    ) -> Option<Vec<RaftEnvelope>> {
        let first = match self.carry.take() {
            Some(envelope) => envelope,
            None => loop {
                if let Some(envelope) = encode(queue.recv().await?, counters) {
                    break envelope;
                }
            },
        };
        let mut bytes = prost::Message::encoded_len(&first);
        let mut envelopes = vec![first];
        while bytes < BATCH_BYTES_MAX {
            let Ok(outgoing) = queue.try_recv() else {
                break;
            };
            let Some(envelope) = encode(outgoing, counters) else {
                continue;
            };
            let size = prost::Message::encoded_len(&envelope);
            if bytes + size > BATCH_BYTES_MAX {
                self.carry = Some(envelope);
                break;
            }
            bytes += size;
            envelopes.push(envelope);
        }
        self.shards.extend(envelopes.iter().map(|e| e.shard));
        Some(envelopes)
    }
}

/// Encodes one message into an envelope; `None` (counted as dropped) if it
/// cannot be encoded or is larger than [`MESSAGE_BYTES_MAX`].
fn encode(outgoing: Outgoing, counters: &TransportCounters) -> Option<RaftEnvelope> {
    let Outgoing { shard, message } = outgoing;
    match protobuf::Message::write_to_bytes(&message) {
        Ok(bytes) if bytes.len() <= MESSAGE_BYTES_MAX => Some(RaftEnvelope {
            shard,
            message: bytes,
        }),
        Ok(bytes) => {
            tracing::warn!(
                shard,
                to = message.to,
                kind = ?message.get_msg_type(),
                bytes = bytes.len(),
                "raft message too large to send; dropped"
            );
            bump(&counters.messages_dropped, 1);
            None
        }
        Err(error) => {
            tracing::warn!(shard, to = message.to, %error, "raft message does not encode; dropped");
            bump(&counters.messages_dropped, 1);
            None
        }
    }
}

/// Where the receiving side hands Raft messages: the seam between the gRPC
/// service and a node, so the service can be tested without a driver.
pub trait RaftInbox: Clone + Send + Sync + 'static {
    /// Number of shards the node runs (ids `0..shards`).
    fn shards(&self) -> u32;
    /// Hands `message` of `shard` to the node without blocking. `false`: it
    /// was dropped (inbox full, node stopped); the sender's Raft retransmits.
    fn deliver(&self, shard: u32, message: Message) -> bool;
}

impl RaftInbox for NodeHandle {
    fn shards(&self) -> u32 {
        self.shards
    }

    fn deliver(&self, shard: u32, message: Message) -> bool {
        self.submit(Inbound::Raft { shard, message }).is_ok()
    }
}

/// What the receiving side has done, for metrics. Every field only grows.
#[derive(Debug, Default)]
pub struct ServiceCounters {
    /// Batches accepted (and acked).
    pub batches_received: AtomicU64,
    /// Messages handed to the node.
    pub messages_delivered: AtomicU64,
    /// Messages whose bytes are not a Raft message (skipped).
    pub messages_undecodable: AtomicU64,
    /// Messages for a shard the node does not run, or addressed to another
    /// node (skipped).
    pub messages_misrouted: AtomicU64,
    /// Messages the node's inbox refused (full or stopped).
    pub messages_dropped: AtomicU64,
    /// Streams ended because a batch named another cluster or node.
    pub streams_refused: AtomicU64,
    /// Snapshots received whole, checked, and handed to the node.
    pub snapshots_received: AtomicU64,
    /// Data chunks of those snapshots.
    pub snapshot_chunks_received: AtomicU64,
    /// Bytes of snapshot data in those snapshots.
    pub snapshot_bytes_received: AtomicU64,
    /// Snapshot calls refused, nothing delivered: another cluster or node,
    /// out of order, over the cap, truncated, checksum mismatch, too many
    /// at once, a broken stream, or the node's inbox refused it.
    pub snapshots_refused: AtomicU64,
}

/// The `RaftTransport` gRPC service: receives peers' batches and hands
/// their messages to the node.
pub struct RaftTransportService<I: RaftInbox = NodeHandle> {
    receiver: Receiver<I>,
}

impl<I: RaftInbox> RaftTransportService<I> {
    /// A service for node `self_id` of cluster `cluster_id`, delivering to
    /// `inbox`; batches and snapshots naming another node or cluster are
    /// refused. Snapshots up to [`SNAPSHOT_BYTES_MAX_DEFAULT`] are accepted.
    pub fn new(self_id: u64, cluster_id: u64, inbox: I) -> Self {
        RaftTransportService {
            receiver: Receiver {
                identity: Identity {
                    self_id,
                    cluster_id,
                    faults: Arc::default(),
                },
                inbox,
                counters: Arc::new(ServiceCounters::default()),
                snapshot_bytes_max: SNAPSHOT_BYTES_MAX_DEFAULT,
                snapshot_slots: Arc::new(Semaphore::new(SNAPSHOT_RECEIVES_MAX)),
            },
        }
    }

    /// Refuses batches and snapshots from peers `faults` blocks (chaos
    /// tests; see [`crate::faults`]).
    pub fn with_faults(mut self, faults: Arc<Faults>) -> Self {
        self.receiver.identity.faults = faults;
        self
    }

    /// Accepts snapshots of at most `bytes` of data instead of
    /// [`SNAPSHOT_BYTES_MAX_DEFAULT`]: the memory one receive may hold.
    pub fn with_snapshot_bytes_max(mut self, bytes: u64) -> Self {
        self.receiver.snapshot_bytes_max = bytes;
        self
    }

    /// The service's counters, for metrics and tests.
    pub fn counters(&self) -> Arc<ServiceCounters> {
        self.receiver.counters.clone()
    }
}

/// The service wrapped for a tonic server, with its size limits applied
/// (a batch over [`FRAME_BYTES_MAX`] ends the stream).
pub fn raft_transport_server<I: RaftInbox>(
    svc: RaftTransportService<I>,
) -> RaftTransportServer<RaftTransportService<I>> {
    RaftTransportServer::new(svc)
        .max_decoding_message_size(FRAME_BYTES_MAX)
        .max_encoding_message_size(ACK_BYTES_MAX)
}

#[tonic::async_trait]
impl<I: RaftInbox> RaftTransport for RaftTransportService<I> {
    type ExchangeStream = ReceiverStream<Result<RaftAck, Status>>;

    async fn exchange(
        &self,
        request: Request<Streaming<RaftBatch>>,
    ) -> Result<Response<Self::ExchangeStream>, Status> {
        let (acks_tx, acks_rx) = mpsc::channel(ACKS_BUFFERED_MAX);
        tokio::spawn(self.receiver.clone().run(request.into_inner(), acks_tx));
        Ok(Response::new(ReceiverStream::new(acks_rx)))
    }

    async fn send_snapshot(
        &self,
        request: Request<Streaming<SnapshotChunk>>,
    ) -> Result<Response<SnapshotDone>, Status> {
        self.receiver
            .receive_snapshot(request.into_inner())
            .await
            .map(Response::new)
    }
}

/// The receiving side of one stream (cloned per stream).
#[derive(Clone)]
struct Receiver<I> {
    identity: Identity,
    inbox: I,
    counters: Arc<ServiceCounters>,
    snapshot_bytes_max: u64,
    /// One permit per snapshot being received ([`SNAPSHOT_RECEIVES_MAX`]).
    snapshot_slots: Arc<Semaphore>,
}

impl<I: RaftInbox> Receiver<I> {
    /// Reads batches until the stream ends, delivering and acking each; a
    /// batch for another cluster or node ends the stream with an error.
    async fn run(
        self,
        mut batches: Streaming<RaftBatch>,
        acks: mpsc::Sender<Result<RaftAck, Status>>,
    ) {
        let mut received: u64 = 0;
        let mut warned = false;
        loop {
            let batch = match batches.message().await {
                Ok(Some(batch)) => batch,
                Ok(None) => return,
                Err(status) => {
                    tracing::debug!(%status, "raft stream from peer ended");
                    return;
                }
            };
            if let Err(status) = self.check(&batch) {
                tracing::warn!(from = batch.from_node, %status, "raft stream refused");
                bump(&self.counters.streams_refused, 1);
                // The peer may be gone already; nothing more to do then.
                let _ = acks.send(Err(status)).await;
                return;
            }
            received += 1;
            bump(&self.counters.batches_received, 1);
            self.deliver(batch, &mut warned);
            if acks.send(Ok(RaftAck { batches: received })).await.is_err() {
                return;
            }
        }
    }

    /// Whether `batch` is meant for this node of this cluster.
    fn check(&self, batch: &RaftBatch) -> Result<(), Status> {
        self.identity.check(
            "raft batch",
            batch.from_node,
            batch.cluster_id,
            batch.to_node,
        )
    }

    /// Receives one snapshot call, counting and logging the outcome; an
    /// error status means nothing was delivered.
    async fn receive_snapshot(
        &self,
        mut chunks: Streaming<SnapshotChunk>,
    ) -> Result<SnapshotDone, Status> {
        let result = self.deliver_snapshot(&mut chunks).await;
        if let Err(status) = &result {
            bump(&self.counters.snapshots_refused, 1);
            tracing::warn!(%status, "raft snapshot refused");
        }
        result
    }

    /// Takes a receive slot, reads and checks the whole snapshot, and hands
    /// it to the node.
    async fn deliver_snapshot(
        &self,
        chunks: &mut Streaming<SnapshotChunk>,
    ) -> Result<SnapshotDone, Status> {
        let Ok(_slot) = self.snapshot_slots.try_acquire() else {
            return Err(Status::resource_exhausted(format!(
                "already receiving {SNAPSHOT_RECEIVES_MAX} snapshots"
            )));
        };
        let expect = snapshot::Expect {
            identity: self.identity.clone(),
            shards: self.inbox.shards(),
            bytes_max: self.snapshot_bytes_max,
        };
        let received = snapshot::read_snapshot(chunks, &expect).await?;
        let index = received.message.get_snapshot().get_metadata().index;
        let (from, shard) = (received.from_node, received.shard);
        if !self.inbox.deliver(shard, received.message) {
            return Err(Status::unavailable(
                "the node's inbox refused the snapshot (full or stopped)",
            ));
        }
        bump(&self.counters.snapshots_received, 1);
        bump(&self.counters.snapshot_chunks_received, received.chunks);
        bump(&self.counters.snapshot_bytes_received, received.data_bytes);
        tracing::info!(
            from,
            shard,
            index,
            bytes = received.data_bytes,
            chunks = received.chunks,
            "raft snapshot received"
        );
        Ok(SnapshotDone {
            data_bytes: received.data_bytes,
        })
    }

    /// Decodes and delivers each message of `batch`, skipping (and logging,
    /// once per stream at warn) those that do not decode or are misrouted.
    fn deliver(&self, batch: RaftBatch, warned: &mut bool) {
        let from = batch.from_node;
        for envelope in batch.messages {
            let shard = envelope.shard;
            let skipped = match <Message as protobuf::Message>::parse_from_bytes(&envelope.message)
            {
                Err(error) => {
                    bump(&self.counters.messages_undecodable, 1);
                    format!("undecodable raft message skipped: {error}")
                }
                Ok(message)
                    if shard >= self.inbox.shards() || message.to != self.identity.self_id =>
                {
                    bump(&self.counters.messages_misrouted, 1);
                    format!(
                        "misrouted raft message skipped: shard {shard} of {}, to node {}",
                        self.inbox.shards(),
                        message.to
                    )
                }
                Ok(message) => {
                    if self.inbox.deliver(shard, message) {
                        bump(&self.counters.messages_delivered, 1);
                    } else {
                        bump(&self.counters.messages_dropped, 1);
                    }
                    continue;
                }
            };
            if *warned {
                tracing::debug!(from, shard, "{skipped}");
            } else {
                tracing::warn!(
                    from,
                    shard,
                    "{skipped} (further ones on this stream logged at debug)"
                );
                *warned = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! Loopback tests on 127.0.0.1: the promises are in-order delivery over
    //! one stream, network input never killing the receiver, refusal of
    //! another cluster's or node's traffic, and a `send` that never waits
    //! for a peer (dropping instead) and recovers once the peer is up.
    //! Snapshots: one arrives whole and equal however many chunks it takes;
    //! a bad snapshot stream delivers nothing; batches keep flowing while a
    //! snapshot is sending; outcomes are reported to the driver.

    use super::snapshot::Chunks;
    use super::*;
    use crate::pb::internal::SnapshotHeader;
    use crossbeam_channel::Sender;
    use std::net::SocketAddr;
    use std::sync::Mutex;
    use std::time::Instant;
    use tokio::net::TcpListener;
    use tokio_stream::wrappers::TcpListenerStream;

    const CLUSTER: u64 = 7;
    const SHARDS: u32 = 3;
    /// Longest any test waits for traffic to arrive.
    const WAIT_MS_MAX: u64 = 10_000;
    /// Interval between checks of the collector.
    const POLL_MS: u64 = 10;

    /// A node's inbox that records what it is handed.
    #[derive(Clone, Default)]
    struct Collector {
        got: Arc<Mutex<Vec<(u32, Message)>>>,
    }

    impl Collector {
        fn len(&self) -> usize {
            self.got.lock().expect("collector lock").len()
        }

        fn taken(&self) -> Vec<(u32, u64)> {
            let got = self.got.lock().expect("collector lock");
            got.iter().map(|(shard, m)| (*shard, m.index)).collect()
        }
    }

    impl RaftInbox for Collector {
        fn shards(&self) -> u32 {
            SHARDS
        }

        fn deliver(&self, shard: u32, message: Message) -> bool {
            self.got
                .lock()
                .expect("collector lock")
                .push((shard, message));
            true
        }
    }

    /// A message for node `to`, told apart by `index`.
    fn message(to: u64, index: u64) -> Message {
        Message {
            from: 1,
            to,
            term: 1,
            index,
            ..Default::default()
        }
    }

    fn encoded(to: u64, index: u64) -> Vec<u8> {
        protobuf::Message::write_to_bytes(&message(to, index)).expect("encode")
    }

    /// Serves node `id` on `listener`, recording into the returned collector.
    fn serve(listener: TcpListener, id: u64) -> (Collector, Arc<ServiceCounters>) {
        let collector = Collector::default();
        let svc = RaftTransportService::new(id, CLUSTER, collector.clone());
        let counters = svc.counters();
        spawn_server(listener, raft_transport_server(svc));
        (collector, counters)
    }

    /// Runs `service` on `listener` until the test's runtime ends.
    fn spawn_server<S: RaftTransport>(listener: TcpListener, service: RaftTransportServer<S>) {
        let server = tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(TcpListenerStream::new(listener));
        tokio::spawn(async move {
            if let Err(error) = server.await {
                panic!("test server failed: {error}");
            }
        });
    }

    async fn listen() -> (TcpListener, SocketAddr) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        (listener, addr)
    }

    /// Polls `done` until it holds, failing the test after [`WAIT_MS_MAX`].
    async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
        let poll = async {
            while !done() {
                tokio::time::sleep(Duration::from_millis(POLL_MS)).await;
            }
        };
        if tokio::time::timeout(Duration::from_millis(WAIT_MS_MAX), poll)
            .await
            .is_err()
        {
            panic!("timed out waiting for {what}");
        }
    }

    /// A bare client stream to `addr`: batches in, acks out.
    async fn raw_stream(addr: SocketAddr) -> (mpsc::Sender<RaftBatch>, Streaming<RaftAck>) {
        let mut client = RaftTransportClient::connect(format!("http://{addr}"))
            .await
            .expect("connect");
        let (tx, rx) = mpsc::channel(4);
        let acks = client
            .exchange(ReceiverStream::new(rx))
            .await
            .expect("open stream")
            .into_inner();
        (tx, acks)
    }

    fn batch(cluster_id: u64, to_node: u64, messages: Vec<RaftEnvelope>) -> RaftBatch {
        RaftBatch {
            from_node: 1,
            to_node,
            cluster_id,
            messages,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn messages_arrive_in_send_order() {
        let (listener, addr) = listen().await;
        let (collector, service) = serve(listener, 2);
        let peers = BTreeMap::from([(1, "127.0.0.1:1".to_string()), (2, addr.to_string())]);
        let transport = GrpcTransport::start(1, CLUSTER, peers, tokio::runtime::Handle::current());
        let mut sent = Vec::new();
        for call in 0..200u64 {
            let shard = (call % u64::from(SHARDS)) as u32;
            let messages: Vec<Message> = (0..10).map(|i| message(2, call * 10 + i)).collect();
            sent.extend(messages.iter().map(|m| (shard, m.index)));
            transport.send(shard, messages);
        }
        wait_until("2,000 messages", || collector.len() >= sent.len()).await;
        assert_eq!(collector.taken(), sent);
        let counters = transport.counters();
        assert_eq!(counters.messages_sent.load(Ordering::Relaxed), 2_000);
        assert_eq!(counters.messages_dropped.load(Ordering::Relaxed), 0);
        assert_eq!(service.messages_delivered.load(Ordering::Relaxed), 2_000);
        wait_until("acks", || {
            counters.acks_received.load(Ordering::Relaxed) >= 1
        })
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn bad_messages_are_skipped_and_the_stream_lives_on() {
        let garbage = vec![0xff; 16];
        assert!(<Message as protobuf::Message>::parse_from_bytes(&garbage).is_err());
        let (listener, addr) = listen().await;
        let (collector, service) = serve(listener, 2);
        let (tx, mut acks) = raw_stream(addr).await;
        let envelope = |shard, message| RaftEnvelope { shard, message };
        let first = vec![
            envelope(0, encoded(2, 1)),
            envelope(0, garbage),
            envelope(SHARDS, encoded(2, 90)), // no such shard
            envelope(1, encoded(3, 91)),      // for another node
            envelope(1, encoded(2, 2)),
        ];
        tx.send(batch(CLUSTER, 2, first)).await.expect("send");
        let ack = acks.message().await.expect("ack").expect("stream open");
        assert_eq!(ack.batches, 1);
        tx.send(batch(CLUSTER, 2, vec![envelope(2, encoded(2, 3))]))
            .await
            .expect("send");
        let ack = acks.message().await.expect("ack").expect("stream open");
        assert_eq!(ack.batches, 2);
        assert_eq!(collector.taken(), vec![(0, 1), (1, 2), (2, 3)]);
        assert_eq!(service.messages_undecodable.load(Ordering::Relaxed), 1);
        assert_eq!(service.messages_misrouted.load(Ordering::Relaxed), 2);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn another_clusters_or_nodes_batches_are_refused() {
        let (listener, addr) = listen().await;
        let (collector, service) = serve(listener, 2);
        let one = || {
            vec![RaftEnvelope {
                shard: 0,
                message: encoded(2, 1),
            }]
        };
        for (cluster_id, to_node, names) in [
            (CLUSTER + 1, 2, ["cluster 8", "cluster 7"]),
            (CLUSTER, 5, ["node 5", "node 2"]),
        ] {
            let (tx, mut acks) = raw_stream(addr).await;
            tx.send(batch(cluster_id, to_node, one()))
                .await
                .expect("send");
            let status = acks.message().await.expect_err("refused");
            assert_eq!(status.code(), tonic::Code::FailedPrecondition);
            for name in names {
                assert!(
                    status.message().contains(name),
                    "{:?} lacks {name}",
                    status.message()
                );
            }
        }
        assert_eq!(collector.len(), 0);
        assert_eq!(service.streams_refused.load(Ordering::Relaxed), 2);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn send_never_waits_for_a_down_peer_and_traffic_resumes_when_it_is_up() {
        let (listener, addr) = listen().await;
        drop(listener); // nothing listens on `addr` until the peer "starts"
        let peers = BTreeMap::from([(1, "127.0.0.1:1".to_string()), (2, addr.to_string())]);
        let transport = GrpcTransport::start(1, CLUSTER, peers, tokio::runtime::Handle::current());
        let counters = transport.counters();
        let started = Instant::now();
        let overflow = 4 * PEER_QUEUE_MESSAGES_MAX as u64;
        for index in 0..overflow {
            transport.send(0, vec![message(2, index)]);
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "send waited: {:?}",
            started.elapsed()
        );
        assert!(counters.messages_dropped.load(Ordering::Relaxed) > 0);

        wait_until("a failed connection attempt", || {
            counters.reconnects.load(Ordering::Relaxed) >= 1
        })
        .await;

        let listener = TcpListener::bind(addr)
            .await
            .expect("rebind the peer's port");
        let (collector, _) = serve(listener, 2);
        // Raft retransmits: keep sending, as a driver would, until one lands.
        let mut index = overflow;
        wait_until("traffic after reconnect", || {
            index += 1;
            transport.send(0, vec![message(2, index)]);
            collector.len() > 0
        })
        .await;
    }

    #[tokio::test]
    async fn messages_for_non_peers_are_dropped() {
        let peers = BTreeMap::from([(1, "127.0.0.1:1".to_string())]);
        let transport = GrpcTransport::start(1, CLUSTER, peers, tokio::runtime::Handle::current());
        transport.send(0, vec![message(1, 1), message(9, 2)]);
        assert_eq!(
            transport
                .counters()
                .messages_dropped
                .load(Ordering::Relaxed),
            2
        );
    }

    #[tokio::test]
    async fn batches_respect_the_byte_cap_and_keep_order() {
        let counters = TransportCounters::default();
        let (tx, mut rx) = mpsc::channel(PEER_QUEUE_MESSAGES_MAX);
        let big = |index: u64, bytes: usize| {
            let mut m = message(2, index);
            let entry = raft::eraftpb::Entry {
                data: vec![7u8; bytes].into(),
                ..Default::default()
            };
            m.entries = vec![entry].into();
            Outgoing {
                shard: 0,
                message: m,
            }
        };
        for index in 0..10 {
            tx.try_send(big(index, 1 << 20))
                .map_err(|_| "queue")
                .expect("queue");
        }
        tx.try_send(big(10, MESSAGE_BYTES_MAX + 1))
            .map_err(|_| "queue")
            .expect("queue");
        tx.try_send(big(11, 1)).map_err(|_| "queue").expect("queue");
        drop(tx);
        let mut batcher = Batcher::default();
        let mut order = Vec::new();
        while let Some(envelopes) = batcher.next(&mut rx, &counters).await {
            let bytes: usize = envelopes.iter().map(prost::Message::encoded_len).sum();
            assert!(bytes <= BATCH_BYTES_MAX, "batch of {bytes} bytes");
            for e in envelopes {
                let m =
                    <Message as protobuf::Message>::parse_from_bytes(&e.message).expect("decode");
                order.push(m.index);
            }
        }
        let expected: Vec<u64> = (0..10).chain([11]).collect();
        assert_eq!(order, expected);
        assert_eq!(counters.messages_dropped.load(Ordering::Relaxed), 1);
    }

    /// What a transport reported to its (stand-in) driver.
    #[derive(Clone, Debug, PartialEq, Eq)]
    enum Report {
        Snapshot { shard: u32, to: u64, ok: bool },
        Unreachable { shard: u32, to: u64 },
    }

    /// A driver's inbox that only records transport reports.
    struct Reports {
        inbox: Arc<Sender<Inbound>>,
        rx: crossbeam_channel::Receiver<Inbound>,
        seen: Mutex<Vec<Report>>,
    }

    impl Reports {
        fn new() -> Self {
            let (tx, rx) = crossbeam_channel::unbounded();
            Reports {
                inbox: Arc::new(tx),
                rx,
                seen: Mutex::default(),
            }
        }

        fn reporter(&self) -> TransportReporter {
            TransportReporter::new(&self.inbox)
        }

        /// Every report so far, in order.
        fn seen(&self) -> Vec<Report> {
            let mut seen = self.seen.lock().expect("reports lock");
            for inbound in self.rx.try_iter() {
                seen.push(match inbound {
                    Inbound::SnapshotStatus { shard, to, ok } => Report::Snapshot { shard, to, ok },
                    Inbound::Unreachable { shard, to } => Report::Unreachable { shard, to },
                    _ => panic!("a transport posted something other than a report"),
                });
            }
            seen.clone()
        }
    }

    /// A transport from node 1 to node 2 at `addr`, reporting to `reports`,
    /// cutting snapshots into chunks of `chunk_bytes`.
    fn transport_to(addr: SocketAddr, reports: &Reports, chunk_bytes: usize) -> GrpcTransport {
        let peers = BTreeMap::from([(1, "127.0.0.1:1".to_string()), (2, addr.to_string())]);
        let mut transport =
            GrpcTransport::start(1, CLUSTER, peers, tokio::runtime::Handle::current())
                .with_snapshot_chunk_bytes(chunk_bytes);
        transport.attach(reports.reporter());
        transport
    }

    /// A `MsgSnapshot` for node `to` at `index` with `bytes` of data that
    /// differ from byte to byte (so a misplaced chunk changes the result).
    fn snapshot_message(to: u64, index: u64, bytes: usize) -> Message {
        let mut m = message(to, index);
        m.set_msg_type(MessageType::MsgSnapshot);
        let snapshot = m.mut_snapshot();
        snapshot.mut_metadata().index = index;
        snapshot.mut_metadata().term = 3;
        snapshot.mut_metadata().mut_conf_state().voters = vec![1, 2, 3];
        let data: Vec<u8> = (0..bytes).map(|i| (i * 31 % 251) as u8).collect();
        snapshot.set_data(data.into());
        m
    }

    /// The header of a snapshot of `data` from node 1 to `to_node` of
    /// `cluster_id` (its message is for node 2).
    fn header(cluster_id: u64, to_node: u64, data: &[u8]) -> SnapshotHeader {
        let mut m = snapshot_message(2, 5, 0);
        m.mut_snapshot().clear_data();
        SnapshotHeader {
            cluster_id,
            from_node: 1,
            to_node,
            shard: 1,
            message: protobuf::Message::write_to_bytes(&m).expect("encode"),
            data_bytes: data.len() as u64,
            data_xxh3: xxhash_rust::xxh3::xxh3_64(data),
        }
    }

    fn chunks(header: SnapshotHeader, data: &[u8], chunk_bytes: usize) -> Vec<SnapshotChunk> {
        Chunks::new(header, data.to_vec().into(), chunk_bytes).collect()
    }

    fn data_chunk(bytes: usize) -> SnapshotChunk {
        SnapshotChunk {
            kind: Some(crate::pb::internal::snapshot_chunk::Kind::Data(vec![
                1;
                bytes
            ])),
        }
    }

    /// Sends `chunks` as one `SendSnapshot` call to `addr`.
    async fn send_raw(
        addr: SocketAddr,
        chunks: Vec<SnapshotChunk>,
    ) -> Result<SnapshotDone, Status> {
        let mut client = RaftTransportClient::connect(format!("http://{addr}"))
            .await
            .expect("connect");
        client
            .send_snapshot(tokio_stream::iter(chunks))
            .await
            .map(Response::into_inner)
    }

    fn load(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_snapshot_of_many_chunks_arrives_whole_and_is_reported_finished() {
        let (listener, addr) = listen().await;
        let (collector, service) = serve(listener, 2);
        let reports = Reports::new();
        let transport = transport_to(addr, &reports, 1_000);
        let sent = snapshot_message(2, 77, 100_500);
        transport.send(1, vec![sent.clone()]);
        wait_until("the snapshot", || collector.len() == 1).await;
        let got = collector.got.lock().expect("collector lock")[0].clone();
        assert_eq!(got, (1, sent), "reassembled message equals the one sent");
        assert_eq!(load(&service.snapshots_received), 1);
        assert_eq!(load(&service.snapshot_chunks_received), 101);
        assert_eq!(load(&service.snapshot_bytes_received), 100_500);
        let finished = Report::Snapshot {
            shard: 1,
            to: 2,
            ok: true,
        };
        wait_until("a Finish report", || reports.seen().contains(&finished)).await;
        let counters = transport.counters();
        assert_eq!(load(&counters.snapshots_sent), 1);
        assert_eq!(load(&counters.messages_sent), 0, "no batch carried it");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_snapshot_larger_than_a_frame_goes_through_in_default_chunks() {
        let (listener, addr) = listen().await;
        let (collector, service) = serve(listener, 2);
        let reports = Reports::new();
        let transport = transport_to(addr, &reports, SNAPSHOT_CHUNK_BYTES_DEFAULT);
        let bytes = FRAME_BYTES_MAX + (3 << 20);
        let sent = snapshot_message(2, 78, bytes);
        transport.send(0, vec![sent.clone()]);
        wait_until("the snapshot", || collector.len() == 1).await;
        let got = collector.got.lock().expect("collector lock")[0].clone();
        assert!(
            got == (0, sent),
            "reassembled message differs from the one sent"
        );
        assert_eq!(load(&service.snapshot_chunks_received), 19);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn bad_snapshot_streams_are_refused_and_deliver_nothing() {
        const CAP_BYTES: u64 = 64 << 10;
        let (listener, addr) = listen().await;
        let collector = Collector::default();
        let svc = RaftTransportService::new(2, CLUSTER, collector.clone())
            .with_snapshot_bytes_max(CAP_BYTES);
        let service = svc.counters();
        spawn_server(listener, raft_transport_server(svc));
        let data: Vec<u8> = (0..10_000u32).map(|i| (i % 253) as u8).collect();
        let good = || chunks(header(CLUSTER, 2, &data), &data, 1_000);
        let truncated = good()[..7].to_vec(); // header and 6 of 10 data chunks
        let mut corrupt = header(CLUSTER, 2, &data);
        corrupt.data_xxh3 ^= 1;
        let mut over_cap = header(CLUSTER, 2, &data);
        over_cap.data_bytes = CAP_BYTES + 1;
        let mut lying = header(CLUSTER, 2, &data);
        lying.data_bytes = 1_000;
        let two_headers = [good(), good()].concat();
        use tonic::Code;
        let cases: Vec<(&str, Vec<SnapshotChunk>, Code, &str)> = vec![
            (
                "truncated",
                truncated,
                Code::DataLoss,
                "after 6000 of 10000 bytes",
            ),
            (
                "bad checksum",
                chunks(corrupt, &data, 1_000),
                Code::DataLoss,
                "checksum",
            ),
            (
                "another cluster",
                chunks(header(CLUSTER + 1, 2, &data), &data, 1_000),
                Code::FailedPrecondition,
                "cluster 8",
            ),
            (
                "another node",
                chunks(header(CLUSTER, 5, &data), &data, 1_000),
                Code::FailedPrecondition,
                "node 5",
            ),
            (
                "over the cap",
                chunks(over_cap, &data, 1_000),
                Code::ResourceExhausted,
                "65537 bytes",
            ),
            (
                "past its declared length",
                chunks(lying, &data, 1_000),
                Code::InvalidArgument,
                "declared 1000",
            ),
            (
                "data before the header",
                vec![data_chunk(10)],
                Code::InvalidArgument,
                "before its header",
            ),
            ("two headers", two_headers, Code::InvalidArgument, "second"),
            (
                "no header",
                Vec::new(),
                Code::InvalidArgument,
                "ended before its header",
            ),
        ];
        let refused = cases.len() as u64;
        for (what, chunks, code, says) in cases {
            let status = send_raw(addr, chunks).await.expect_err(what);
            assert_eq!(status.code(), code, "{what}: {status}");
            assert!(status.message().contains(says), "{what}: {status}");
        }
        assert_eq!(collector.len(), 0, "nothing was delivered");
        assert_eq!(load(&service.snapshots_refused), refused);
        assert_eq!(load(&service.snapshots_received), 0);

        // The same service takes a good one, so the refusals were its checks.
        let done = send_raw(addr, good()).await.expect("a good snapshot");
        assert_eq!(done.data_bytes, 10_000);
        assert_eq!(collector.len(), 1);
        assert_eq!(load(&service.snapshot_chunks_received), 10);
    }

    /// A receiving node whose `SendSnapshot` waits for the test to open a
    /// gate before reading the stream, so a snapshot stays in flight.
    struct GatedSnapshots {
        inner: RaftTransportService<Collector>,
        gate: Arc<Semaphore>,
        entered: Arc<AtomicU64>,
    }

    #[tonic::async_trait]
    impl RaftTransport for GatedSnapshots {
        type ExchangeStream = ReceiverStream<Result<RaftAck, Status>>;

        async fn exchange(
            &self,
            request: Request<Streaming<RaftBatch>>,
        ) -> Result<Response<Self::ExchangeStream>, Status> {
            self.inner.exchange(request).await
        }

        async fn send_snapshot(
            &self,
            request: Request<Streaming<SnapshotChunk>>,
        ) -> Result<Response<SnapshotDone>, Status> {
            bump(&self.entered, 1);
            let pass = self.gate.acquire().await;
            let _pass = pass.map_err(|_| Status::aborted("gate closed"))?;
            self.inner.send_snapshot(request).await
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn batches_keep_flowing_while_a_snapshot_is_sending() {
        let (listener, addr) = listen().await;
        let collector = Collector::default();
        let inner = RaftTransportService::new(2, CLUSTER, collector.clone());
        let service = inner.counters();
        let gate = Arc::new(Semaphore::new(0));
        let entered = Arc::new(AtomicU64::new(0));
        let gated = GatedSnapshots {
            inner,
            gate: gate.clone(),
            entered: entered.clone(),
        };
        spawn_server(listener, RaftTransportServer::new(gated));
        let reports = Reports::new();
        let transport = transport_to(addr, &reports, 4_096);
        let counters = transport.counters();

        // Larger than the receiver's HTTP/2 window (1 MiB): the sender is
        // held mid-stream until the gate opens.
        let first = snapshot_message(2, 10, 4 << 20);
        transport.send(0, vec![first.clone()]);
        wait_until("the snapshot call to open", || load(&entered) == 1).await;
        transport.send(0, vec![snapshot_message(2, 11, 10)]);
        assert_eq!(
            load(&counters.snapshots_dropped),
            1,
            "a second snapshot for the same peer and shard is dropped"
        );

        for call in 0..100u64 {
            let messages: Vec<Message> = (0..10).map(|i| message(2, call * 10 + i)).collect();
            transport.send((call % 2) as u32, messages);
        }
        wait_until("1,000 messages", || collector.len() == 1_000).await;
        assert_eq!(
            load(&service.snapshots_received),
            0,
            "the snapshot is still held"
        );
        assert!(
            reports.seen().is_empty(),
            "no outcome yet: {:?}",
            reports.seen()
        );

        gate.add_permits(1);
        wait_until("the snapshot", || collector.len() == 1_001).await;
        let got = collector.got.lock().expect("collector lock")[1_000].clone();
        assert_eq!(got, (0, first));
        let finished = Report::Snapshot {
            shard: 0,
            to: 2,
            ok: true,
        };
        wait_until("a Finish report", || {
            reports.seen() == vec![finished.clone()]
        })
        .await;

        // The slot is free again: the next snapshot goes.
        transport.send(0, vec![snapshot_message(2, 12, 10)]);
        gate.add_permits(1);
        wait_until("the next snapshot", || collector.len() == 1_002).await;
        assert_eq!(load(&counters.snapshots_dropped), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_down_peer_is_reported_unreachable_and_a_snapshot_to_it_fails() {
        let (listener, addr) = listen().await;
        drop(listener); // nothing listens on `addr`
        let reports = Reports::new();
        let transport = transport_to(addr, &reports, 1_000);
        transport.send(0, vec![message(2, 1)]);
        transport.send(2, vec![message(2, 2), message(2, 3)]);
        transport.send(1, vec![snapshot_message(2, 9, 5_000)]);
        let expected = [
            Report::Snapshot {
                shard: 1,
                to: 2,
                ok: false,
            },
            Report::Unreachable { shard: 0, to: 2 },
            Report::Unreachable { shard: 2, to: 2 },
        ];
        wait_until("failure and unreachable reports", || {
            let seen = reports.seen();
            expected.iter().all(|r| seen.contains(r))
        })
        .await;
        let seen = reports.seen();
        assert!(
            !seen.contains(&Report::Unreachable { shard: 1, to: 2 }),
            "only shards with messages lost are reported: {seen:?}"
        );
        let counters = transport.counters();
        assert_eq!(load(&counters.snapshots_failed), 1);
        assert!(load(&counters.unreachable_reports) >= 2);
    }
}
