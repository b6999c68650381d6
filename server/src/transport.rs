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

use crate::node::messages::Inbound;
use crate::node::{NodeHandle, Transport};
use crate::pb::internal::raft_transport_client::RaftTransportClient;
use crate::pb::internal::raft_transport_server::{RaftTransport, RaftTransportServer};
use crate::pb::internal::{RaftAck, RaftBatch, RaftEnvelope};
use raft::eraftpb::Message;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
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
/// Largest single encoded Raft message sent, in bytes: a frame's limit less
/// 1 MiB of headroom for the batch and envelope fields. A larger message (a
/// snapshot) is dropped with a warning rather than breaking the stream.
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

/// The gRPC [`Transport`]: one queue and one streaming task per peer.
/// Dropping it closes the queues, and each task ends.
pub struct GrpcTransport {
    queues: BTreeMap<u64, mpsc::Sender<Outgoing>>,
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
            let link = PeerLink {
                self_id,
                peer_id,
                cluster_id,
                endpoint,
                counters: counters.clone(),
            };
            runtime.spawn(link.run(rx));
        }
        GrpcTransport { queues, counters }
    }

    /// The transport's counters, for metrics and tests.
    pub fn counters(&self) -> Arc<TransportCounters> {
        self.counters.clone()
    }
}

impl Transport for GrpcTransport {
    fn send(&self, shard: u32, messages: Vec<Message>) {
        for message in messages {
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
        }
    }

    /// Throws away what was queued while the peer was unreachable. `false`:
    /// the transport was dropped.
    fn discard_stale(&self, queue: &mut mpsc::Receiver<Outgoing>, batcher: &mut Batcher) -> bool {
        let mut discarded = u64::from(batcher.carry.take().is_some());
        let open = loop {
            match queue.try_recv() {
                Ok(_) => discarded += 1,
                Err(mpsc::error::TryRecvError::Empty) => break true,
                Err(mpsc::error::TryRecvError::Disconnected) => break false,
            }
        };
        bump(&self.counters.messages_discarded, discarded);
        open
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
}

/// The `RaftTransport` gRPC service: receives peers' batches and hands
/// their messages to the node.
pub struct RaftTransportService<I: RaftInbox = NodeHandle> {
    receiver: Receiver<I>,
}

impl<I: RaftInbox> RaftTransportService<I> {
    /// A service for node `self_id` of cluster `cluster_id`, delivering to
    /// `inbox`; batches naming another node or cluster are refused.
    pub fn new(self_id: u64, cluster_id: u64, inbox: I) -> Self {
        RaftTransportService {
            receiver: Receiver {
                self_id,
                cluster_id,
                inbox,
                counters: Arc::new(ServiceCounters::default()),
            },
        }
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
}

/// The receiving side of one stream (cloned per stream).
#[derive(Clone)]
struct Receiver<I> {
    self_id: u64,
    cluster_id: u64,
    inbox: I,
    counters: Arc<ServiceCounters>,
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
        if batch.cluster_id != self.cluster_id {
            return Err(Status::failed_precondition(format!(
                "raft batch from node {} is for cluster {}, this node is in cluster {}",
                batch.from_node, batch.cluster_id, self.cluster_id
            )));
        }
        if batch.to_node != self.self_id {
            return Err(Status::failed_precondition(format!(
                "raft batch from node {} is for node {}, this is node {}",
                batch.from_node, batch.to_node, self.self_id
            )));
        }
        Ok(())
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
                Ok(message) if shard >= self.inbox.shards() || message.to != self.self_id => {
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

    use super::*;
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
        let server = tonic::transport::Server::builder()
            .add_service(raft_transport_server(svc))
            .serve_with_incoming(TcpListenerStream::new(listener));
        tokio::spawn(async move {
            if let Err(error) = server.await {
                panic!("test server failed: {error}");
            }
        });
        (collector, counters)
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
}
