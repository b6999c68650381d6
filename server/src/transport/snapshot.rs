//! Raft snapshots between nodes: one `RaftTransport.SendSnapshot` call per
//! snapshot, in chunks, beside the `Exchange` stream (as TiKV does).
//!
//! The unit of work is a *snapshot send*: one `MsgSnapshot` of one shard
//! for one peer. Its data can be far larger than a frame (a shard of a
//! million stock rows snapshots to ~47 MB), so it never enters a
//! `RaftBatch`.
//!
//! Sending: [`SnapshotSender::start`] runs on the driver thread and never
//! waits: it claims the (peer, shard) slot and spawns a task on the
//! runtime. The task connects on a connection of its own (so the snapshot
//! shares no HTTP/2 window with `Exchange`), streams a [`SnapshotHeader`]
//! and then the data in chunks of `chunk_bytes`, waits for the receiver's
//! `SnapshotDone`, and reports the outcome to the driver
//! ([`TransportReporter::snapshot_status`]). At most one send per
//! (peer, shard) is in flight; a newer snapshot meanwhile is dropped
//! without a report (the one in flight will report, and Raft sends another
//! if the follower still needs one).
//!
//! Receiving: [`read_snapshot`] reads one call's chunks into an
//! [`Assembly`] (pure, no I/O), which refuses with an error status, before
//! anything is delivered, a stream that is out of order, for another
//! cluster or node, declared larger than the cap, longer or shorter than
//! declared, or whose xxh3-64 does not match.

use super::{bump, Identity, TransportCounters, ACK_BYTES_MAX, FRAME_BYTES_MAX, MESSAGE_BYTES_MAX};
use crate::node::TransportReporter;
use crate::pb::internal::raft_transport_client::RaftTransportClient;
use crate::pb::internal::snapshot_chunk::Kind;
use crate::pb::internal::{SnapshotChunk, SnapshotHeader};
use parking_lot::Mutex;
use prost::bytes::Bytes;
use raft::eraftpb::{Message, MessageType};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tonic::transport::Endpoint;
use tonic::{Status, Streaming};
use xxhash_rust::xxh3::{xxh3_64, Xxh3Default};

/// Snapshot data bytes per chunk by default: large enough that per-chunk
/// overhead is nothing, small enough that a chunk is a small part of a
/// frame and of the HTTP/2 window.
pub const SNAPSHOT_CHUNK_BYTES_DEFAULT: usize = 1 << 20;
/// Largest chunk a sender may be set to: a chunk must fit in a frame with
/// room to spare ([`MESSAGE_BYTES_MAX`] is a frame less its headroom).
pub const SNAPSHOT_CHUNK_BYTES_MAX: usize = MESSAGE_BYTES_MAX;
/// Largest snapshot a node accepts by default, in bytes of data: the most
/// memory one receive may hold. About 20× the 47 MB snapshot of a shard of
/// a million stock rows.
pub const SNAPSHOT_BYTES_MAX_DEFAULT: u64 = 1 << 30;
/// Snapshots a node receives at once at most; a further send is refused
/// (`RESOURCE_EXHAUSTED`) and Raft retries it. With the cap, bounds the
/// memory of receiving to 4 GiB at the defaults.
pub const SNAPSHOT_RECEIVES_MAX: usize = 4;
/// Longest a receiver waits for the next chunk: a sender that stalls does
/// not hold a receive slot (and its memory) for ever.
pub const SNAPSHOT_CHUNK_WAIT_MS_MAX: u64 = 10_000;
/// Time any snapshot send gets, on top of its size allowance: connecting,
/// and the receiver handing the snapshot to its node.
pub const SNAPSHOT_SEND_TIMEOUT_MS_BASE: u64 = 10_000;
/// Slowest transfer a snapshot send is allowed, in bytes per second, before
/// it is given up and reported failed: a 1 GiB snapshot gets 10 s + 128 s.
/// A stuck send must end, or its (peer, shard) slot would block every later
/// snapshot to that peer.
pub const SNAPSHOT_SEND_BYTES_PER_S_MIN: u64 = 8 << 20;

/// Starts snapshot sends. Owned by the `GrpcTransport`, used on the driver
/// thread.
pub(super) struct SnapshotSender {
    identity: Identity,
    endpoints: BTreeMap<u64, Endpoint>,
    runtime: tokio::runtime::Handle,
    /// Snapshot data bytes per chunk (tests set it small).
    pub(super) chunk_bytes: usize,
    in_flight: Arc<Mutex<BTreeSet<(u64, u32)>>>,
    reporter: Arc<OnceLock<TransportReporter>>,
    counters: Arc<TransportCounters>,
}

impl SnapshotSender {
    /// A sender with no peers yet and the default chunk size.
    pub(super) fn new(
        identity: Identity,
        runtime: tokio::runtime::Handle,
        reporter: Arc<OnceLock<TransportReporter>>,
        counters: Arc<TransportCounters>,
    ) -> Self {
        SnapshotSender {
            identity,
            endpoints: BTreeMap::new(),
            runtime,
            chunk_bytes: SNAPSHOT_CHUNK_BYTES_DEFAULT,
            in_flight: Arc::default(),
            reporter,
            counters,
        }
    }

    /// Sends snapshots to `peer` at `endpoint` from now on.
    pub(super) fn add_peer(&mut self, peer: u64, endpoint: Endpoint) {
        self.endpoints.insert(peer, endpoint);
    }

    /// Starts sending `message` (a `MsgSnapshot` of `shard`) on a task of
    /// its own; never waits. Dropped if a send to the same (peer, shard) is
    /// in flight; dropped and reported failed if the peer has no endpoint.
    pub(super) fn start(&self, shard: u32, message: Message) {
        let to = message.to;
        let Some(endpoint) = self.endpoints.get(&to) else {
            tracing::debug!(
                shard,
                to,
                "snapshot for a node with no peer address dropped"
            );
            bump(&self.counters.snapshots_dropped, 1);
            report(&self.reporter, shard, to, false);
            return;
        };
        let Some(slot) = InFlightSlot::claim(&self.in_flight, to, shard) else {
            tracing::debug!(
                shard,
                to,
                "a snapshot to this peer is still sending; the newer one is dropped"
            );
            bump(&self.counters.snapshots_dropped, 1);
            return;
        };
        let send = SnapshotSend {
            identity: self.identity.clone(),
            shard,
            to,
            endpoint: endpoint.clone(),
            chunk_bytes: self.chunk_bytes,
            reporter: self.reporter.clone(),
            counters: self.counters.clone(),
        };
        self.runtime.spawn(send.run(message, slot));
    }
}

/// Reports a snapshot's outcome if the transport is attached to a node.
fn report(reporter: &OnceLock<TransportReporter>, shard: u32, to: u64, ok: bool) {
    if let Some(reporter) = reporter.get() {
        reporter.snapshot_status(shard, to, ok);
    }
}

/// The claim on a (peer, shard) pair while its snapshot is sending; freed
/// on drop, so a send that ends in any way (the runtime shutting down
/// included) frees it.
pub(super) struct InFlightSlot {
    set: Arc<Mutex<BTreeSet<(u64, u32)>>>,
    key: (u64, u32),
}

impl InFlightSlot {
    /// The slot of (`to`, `shard`), unless a send holds it.
    fn claim(set: &Arc<Mutex<BTreeSet<(u64, u32)>>>, to: u64, shard: u32) -> Option<Self> {
        set.lock().insert((to, shard)).then(|| InFlightSlot {
            set: set.clone(),
            key: (to, shard),
        })
    }
}

impl Drop for InFlightSlot {
    fn drop(&mut self) {
        self.set.lock().remove(&self.key);
    }
}

/// One snapshot on its way to one peer.
struct SnapshotSend {
    identity: Identity,
    shard: u32,
    to: u64,
    endpoint: Endpoint,
    chunk_bytes: usize,
    reporter: Arc<OnceLock<TransportReporter>>,
    counters: Arc<TransportCounters>,
}

impl SnapshotSend {
    /// Streams the snapshot within its time allowance, frees the slot, then
    /// reports (in that order, so a snapshot Raft sends in answer to the
    /// report is not dropped as a duplicate).
    async fn run(self, message: Message, slot: InFlightSlot) {
        let (shard, to) = (self.shard, self.to);
        let index = message.get_snapshot().get_metadata().index;
        let bytes = message.get_snapshot().get_data().len() as u64;
        let limit = send_timeout(bytes);
        let result = match tokio::time::timeout(limit, self.stream(message)).await {
            Ok(result) => result,
            Err(_) => Err(format!("not done in {} ms", limit.as_millis())),
        };
        drop(slot);
        match &result {
            Ok(chunks) => {
                tracing::info!(shard, to, index, bytes, chunks, "snapshot sent");
                bump(&self.counters.snapshots_sent, 1);
                bump(&self.counters.snapshot_bytes_sent, bytes);
            }
            Err(why) => {
                tracing::warn!(shard, to, index, bytes, error = %why, "snapshot send failed");
                bump(&self.counters.snapshots_failed, 1);
            }
        }
        report(&self.reporter, shard, to, result.is_ok());
    }

    /// Connects, streams header and chunks, and checks the receiver got
    /// every byte. Returns the number of data chunks sent.
    async fn stream(&self, mut message: Message) -> Result<u64, String> {
        let data = message.mut_snapshot().take_data();
        let encoded = protobuf::Message::write_to_bytes(&message)
            .map_err(|error| format!("encode the message: {error}"))?;
        let header = SnapshotHeader {
            cluster_id: self.identity.cluster_id,
            from_node: self.identity.self_id,
            to_node: self.to,
            shard: self.shard,
            message: encoded,
            data_bytes: data.len() as u64,
            data_xxh3: xxh3_64(&data),
        };
        let data_bytes = header.data_bytes;
        let chunks = Chunks::new(header, data, self.chunk_bytes);
        let count = chunks.data_chunks();
        let channel = self
            .endpoint
            .connect()
            .await
            .map_err(|error| format!("connect: {error}"))?;
        let mut client = RaftTransportClient::new(channel)
            .max_encoding_message_size(FRAME_BYTES_MAX)
            .max_decoding_message_size(ACK_BYTES_MAX);
        let done = client
            .send_snapshot(tokio_stream::iter(chunks))
            .await
            .map_err(|status| format!("refused: {status}"))?
            .into_inner();
        if done.data_bytes != data_bytes {
            return Err(format!(
                "the peer received {} of {data_bytes} bytes",
                done.data_bytes
            ));
        }
        Ok(count)
    }
}

/// Time a send of `bytes` of snapshot data may take.
fn send_timeout(bytes: u64) -> Duration {
    Duration::from_millis(SNAPSHOT_SEND_TIMEOUT_MS_BASE)
        + Duration::from_secs(bytes / SNAPSHOT_SEND_BYTES_PER_S_MIN)
}

/// The chunks of one snapshot, the header first; each data chunk is cut
/// when the stream asks for it, so only a few exist beside the data.
pub(super) struct Chunks {
    header: Option<SnapshotHeader>,
    data: Bytes,
    offset: usize,
    chunk_bytes: usize,
}

impl Chunks {
    /// The chunks of `data` under `header`, `chunk_bytes` (at least 1) each.
    pub(super) fn new(header: SnapshotHeader, data: Bytes, chunk_bytes: usize) -> Self {
        Chunks {
            header: Some(header),
            data,
            offset: 0,
            chunk_bytes: chunk_bytes.max(1),
        }
    }

    /// How many data chunks follow the header.
    fn data_chunks(&self) -> u64 {
        self.data.len().div_ceil(self.chunk_bytes) as u64
    }
}

impl Iterator for Chunks {
    type Item = SnapshotChunk;

    fn next(&mut self) -> Option<SnapshotChunk> {
        if let Some(header) = self.header.take() {
            return Some(SnapshotChunk {
                kind: Some(Kind::Header(header)),
            });
        }
        if self.offset >= self.data.len() {
            return None;
        }
        let end = self.data.len().min(self.offset + self.chunk_bytes);
        let piece = self.data[self.offset..end].to_vec();
        self.offset = end;
        Some(SnapshotChunk {
            kind: Some(Kind::Data(piece)),
        })
    }
}

/// What a receiver accepts.
pub(super) struct Expect {
    /// This node and its cluster.
    pub(super) identity: Identity,
    /// Shards the node runs (ids `0..shards`).
    pub(super) shards: u32,
    /// Largest snapshot data accepted, in bytes.
    pub(super) bytes_max: u64,
}

/// A snapshot received whole and checked.
pub(super) struct Received {
    /// Sender's node id.
    pub(super) from_node: u64,
    /// The shard.
    pub(super) shard: u32,
    /// The `MsgSnapshot`, its data restored.
    pub(super) message: Message,
    /// Data chunks it came in.
    pub(super) chunks: u64,
    /// Bytes of data.
    pub(super) data_bytes: u64,
}

/// A snapshot being put back together from its chunks. Pure (no I/O), so
/// every refusal is decided here.
pub(super) struct Assembly {
    from_node: u64,
    shard: u32,
    message: Message,
    data_bytes: u64,
    data_xxh3: u64,
    data: Vec<u8>,
    hasher: Xxh3Default,
    chunks: u64,
}

impl Assembly {
    /// Starts from the header, refusing a snapshot for another cluster or
    /// node (`FAILED_PRECONDITION`), over the cap (`RESOURCE_EXHAUSTED`), or
    /// for a shard the node does not run or whose message is not a
    /// `MsgSnapshot` for this node (`INVALID_ARGUMENT`).
    pub(super) fn start(header: SnapshotHeader, expect: &Expect) -> Result<Assembly, Status> {
        let from = header.from_node;
        expect
            .identity
            .check("snapshot", from, header.cluster_id, header.to_node)?;
        if header.data_bytes > expect.bytes_max {
            return Err(Status::resource_exhausted(format!(
                "snapshot from node {from} has {} bytes, more than the {} this node accepts",
                header.data_bytes, expect.bytes_max
            )));
        }
        if header.shard >= expect.shards {
            return Err(Status::invalid_argument(format!(
                "snapshot from node {from} is for shard {}; this node runs {}",
                header.shard, expect.shards
            )));
        }
        let message =
            <Message as protobuf::Message>::parse_from_bytes(&header.message).map_err(|error| {
                Status::invalid_argument(format!("snapshot header message: {error}"))
            })?;
        if message.get_msg_type() != MessageType::MsgSnapshot
            || message.to != expect.identity.self_id
        {
            return Err(Status::invalid_argument(format!(
                "snapshot header carries a {:?} for node {}",
                message.get_msg_type(),
                message.to
            )));
        }
        Ok(Assembly {
            from_node: from,
            shard: header.shard,
            message,
            data_bytes: header.data_bytes,
            data_xxh3: header.data_xxh3,
            data: Vec::new(),
            hasher: Xxh3Default::new(),
            chunks: 0,
        })
    }

    /// Adds the next piece; refuses one that goes past the declared length
    /// (which is within the cap, so memory never exceeds the cap).
    pub(super) fn push(&mut self, piece: &[u8]) -> Result<(), Status> {
        let total = self.data.len() as u64 + piece.len() as u64;
        if total > self.data_bytes {
            return Err(Status::invalid_argument(format!(
                "snapshot data runs past its declared {} bytes",
                self.data_bytes
            )));
        }
        self.hasher.update(piece);
        self.data.extend_from_slice(piece);
        self.chunks += 1;
        Ok(())
    }

    /// The snapshot, if every declared byte arrived and the checksum
    /// matches (`DATA_LOSS` otherwise).
    pub(super) fn finish(mut self) -> Result<Received, Status> {
        let got = self.data.len() as u64;
        if got != self.data_bytes {
            return Err(Status::data_loss(format!(
                "snapshot stream ended after {got} of {} bytes",
                self.data_bytes
            )));
        }
        let digest = self.hasher.digest();
        if digest != self.data_xxh3 {
            return Err(Status::data_loss(format!(
                "snapshot checksum {digest:#018x} does not match the header's {:#018x}",
                self.data_xxh3
            )));
        }
        self.message.mut_snapshot().set_data(self.data.into());
        Ok(Received {
            from_node: self.from_node,
            shard: self.shard,
            message: self.message,
            chunks: self.chunks,
            data_bytes: got,
        })
    }
}

/// Reads one snapshot call: a header, then data chunks to the end of the
/// stream. Anything out of that order is refused (`INVALID_ARGUMENT`).
pub(super) async fn read_snapshot(
    chunks: &mut Streaming<SnapshotChunk>,
    expect: &Expect,
) -> Result<Received, Status> {
    let mut assembly = match next_chunk(chunks).await? {
        Some(Kind::Header(header)) => Assembly::start(header, expect)?,
        Some(Kind::Data(_)) => {
            return Err(Status::invalid_argument("snapshot data before its header"))
        }
        None => {
            return Err(Status::invalid_argument(
                "snapshot stream ended before its header",
            ))
        }
    };
    loop {
        match next_chunk(chunks).await? {
            Some(Kind::Data(piece)) => assembly.push(&piece)?,
            Some(Kind::Header(_)) => {
                return Err(Status::invalid_argument("a second snapshot header"))
            }
            None => return assembly.finish(),
        }
    }
}

/// The next chunk's content, `None` at the end of the stream. A broken
/// stream, an empty chunk or a wait over [`SNAPSHOT_CHUNK_WAIT_MS_MAX`] is
/// an error.
async fn next_chunk(chunks: &mut Streaming<SnapshotChunk>) -> Result<Option<Kind>, Status> {
    let wait = Duration::from_millis(SNAPSHOT_CHUNK_WAIT_MS_MAX);
    match tokio::time::timeout(wait, chunks.message()).await {
        Err(_) => Err(Status::deadline_exceeded(format!(
            "no snapshot chunk in {SNAPSHOT_CHUNK_WAIT_MS_MAX} ms"
        ))),
        Ok(Err(status)) => Err(status),
        Ok(Ok(None)) => Ok(None),
        Ok(Ok(Some(SnapshotChunk { kind: Some(kind) }))) => Ok(Some(kind)),
        Ok(Ok(Some(SnapshotChunk { kind: None }))) => Err(Status::invalid_argument(
            "a snapshot chunk with neither header nor data",
        )),
    }
}
