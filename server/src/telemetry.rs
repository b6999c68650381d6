//! Prometheus metrics: the exporter (`--metrics-listen`) and the node's
//! own figures published into it.
//!
//! Three kinds of metric reach the exporter:
//! - per-RPC counters, latency histograms and in-flight gauges, recorded by
//!   the tower layer of `rpc_layer` as calls end;
//! - the fsync latency and commands-per-entry histograms, recorded by the
//!   driver at each fsynced write and each proposal
//!   (`node::stats::FSYNC_SECONDS_METRIC`, `ENTRY_COMMANDS_METRIC`);
//! - everything else is a total or a state the node already keeps (driver,
//!   transport and pre-filter counters, each shard's leader, term, indexes
//!   and pending holds): the
//!   health task (`health`) copies them here on each of its polls, so a
//!   scrape sees them at most one poll (200 ms) old.
//!
//! The exporter's own HTTP listener answers `GET` on any path (`/metrics`
//! by convention) in the Prometheus text format.

use crate::node::messages::ShardStatus;
use crate::node::stats::{ENTRY_COMMANDS_METRIC, FSYNC_SECONDS_METRIC};
use crate::node::Routing;
use crate::prefilter_stats::PrefilterStats;
use crate::rpc_layer::{DURATION_METRIC, IN_FLIGHT_METRIC, REQUESTS_METRIC};
use crate::transport::{ServiceCounters, TransportCounters};
use metrics::{Counter, Gauge};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Histogram buckets of request times, seconds: a local reserve takes about
/// a millisecond (an fsync), a forwarded one a few, a stalled one up to the
/// 5 s default deadline.
const REQUEST_SECONDS_BUCKETS: [f64; 14] = [
    0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Histogram buckets of fsync times, seconds: tens of µs on a battery-backed
/// disk, milliseconds on a consumer SSD, more on a saturated one.
const FSYNC_SECONDS_BUCKETS: [f64; 12] = [
    0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];

/// Histogram buckets of commands per log entry: one when the load is
/// light, hundreds when a crowd shares each fsync, up to a batch's items.
const ENTRY_COMMANDS_BUCKETS: [f64; 12] = [
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 4096.0,
];

/// Whether the node reports SERVING on grpc.health.v1 (1) or not (0).
pub const SERVING_METRIC: &str = "holdfast_health_serving";

/// Installs the Prometheus recorder and serves it over HTTP on `listen`.
/// Call inside the tokio runtime (the listener and the exporter's upkeep
/// are tasks on it) and before anything records a metric: handles taken
/// earlier stay no-ops.
pub fn install(listen: SocketAddr) -> Result<(), String> {
    let (recorder, exporter) = PrometheusBuilder::new()
        .with_http_listener(listen)
        .set_buckets_for_metric(
            Matcher::Full(DURATION_METRIC.to_string()),
            &REQUEST_SECONDS_BUCKETS,
        )
        .and_then(|b| {
            b.set_buckets_for_metric(
                Matcher::Full(FSYNC_SECONDS_METRIC.to_string()),
                &FSYNC_SECONDS_BUCKETS,
            )
        })
        .and_then(|b| {
            b.set_buckets_for_metric(
                Matcher::Full(ENTRY_COMMANDS_METRIC.to_string()),
                &ENTRY_COMMANDS_BUCKETS,
            )
        })
        .and_then(|b| b.build())
        .map_err(|e| format!("cannot serve metrics on {listen}: {e}"))?;
    tokio::spawn(async move {
        if let Err(e) = exporter.await {
            tracing::error!(error = ?e, "the metrics HTTP listener stopped");
        }
    });
    metrics::set_global_recorder(recorder)
        .map_err(|e| format!("cannot install the metrics recorder: {e}"))?;
    describe_layer_metrics();
    tracing::info!(listen = %listen, "serving Prometheus metrics over HTTP");
    Ok(())
}

fn describe_layer_metrics() {
    metrics::describe_counter!(
        REQUESTS_METRIC,
        "gRPC requests finished, by service, method and status code"
    );
    metrics::describe_histogram!(
        DURATION_METRIC,
        metrics::Unit::Seconds,
        "gRPC request time from arrival to the last response frame"
    );
    metrics::describe_gauge!(IN_FLIGHT_METRIC, "gRPC requests started and not finished");
    metrics::describe_histogram!(
        FSYNC_SECONDS_METRIC,
        metrics::Unit::Seconds,
        "time of each fsynced group-commit write of the driver"
    );
    metrics::describe_histogram!(
        ENTRY_COMMANDS_METRIC,
        "client commands in each log entry this node proposed as a leader (the batch size)"
    );
    metrics::describe_gauge!(
        SERVING_METRIC,
        "1 while grpc.health.v1 reports SERVING (every shard has a leader and this node applied what it knows committed)"
    );
}

/// A total the node keeps in an atomic, copied into a Prometheus counter.
struct CopiedCounter {
    counter: Counter,
    read: Box<dyn Fn() -> u64 + Send + Sync>,
}

/// One shard's gauges.
struct ShardGauges {
    leader: Gauge,
    term: Gauge,
    commit: Gauge,
    applied: Gauge,
    reservations: Gauge,
    pending: Gauge,
}

impl ShardGauges {
    fn new(shard: u32) -> Self {
        let gauge = |name: &'static str| metrics::gauge!(name, "shard" => shard.to_string());
        ShardGauges {
            leader: gauge("holdfast_shard_leader_id"),
            term: gauge("holdfast_shard_term"),
            commit: gauge("holdfast_shard_commit_index"),
            applied: gauge("holdfast_shard_applied_index"),
            reservations: gauge("holdfast_shard_reservations_retained"),
            pending: gauge("holdfast_shard_holds_pending"),
        }
    }
}

/// The node's figures for Prometheus: built once the recorder is
/// installed, refreshed by the health task.
pub struct NodeTelemetry {
    counters: Vec<CopiedCounter>,
    shards: Vec<ShardGauges>,
    serving: Gauge,
}

/// Source of one copied counter: name, help, and where its total lives.
type Source<T> = (&'static str, &'static str, fn(&T) -> &AtomicU64);

/// The driver's counters (`node::stats::DriverStats`, published in the
/// routing table).
/// (Their fsync time total is the `_sum` of the fsync histogram.)
const DRIVER_COUNTERS: [Source<Routing>; 7] = [
    (
        "holdfast_driver_loop_turns_total",
        "turns of the driver loop",
        |r| &r.stats.iterations,
    ),
    (
        "holdfast_driver_fsynced_writes_total",
        "fsynced group-commit writes (entries, snapshots, term or vote)",
        |r| &r.stats.group_commits,
    ),
    (
        "holdfast_driver_unsynced_writes_total",
        "writes without an fsync (commit and applied indexes only)",
        |r| &r.stats.unsynced_writes,
    ),
    (
        "holdfast_driver_entries_proposed_total",
        "log entries this node proposed as a leader",
        |r| &r.stats.entries_proposed,
    ),
    (
        "holdfast_driver_commands_proposed_total",
        "client commands inside proposed entries (per entry: the batch size)",
        |r| &r.stats.commands_proposed,
    ),
    (
        "holdfast_driver_entries_applied_total",
        "log entries applied to the ledger",
        |r| &r.stats.entries_applied,
    ),
    (
        "holdfast_driver_messages_sent_total",
        "Raft messages handed to the transport",
        |r| &r.stats.messages_sent,
    ),
];

const SEND_COUNTERS: [Source<TransportCounters>; 11] = [
    (
        "holdfast_transport_batches_sent_total",
        "batches handed to peers' streams",
        |t| &t.batches_sent,
    ),
    (
        "holdfast_transport_messages_sent_total",
        "Raft messages in those batches",
        |t| &t.messages_sent,
    ),
    (
        "holdfast_transport_messages_dropped_total",
        "messages never sent (peer queue full, no such peer, too large)",
        |t| &t.messages_dropped,
    ),
    (
        "holdfast_transport_messages_discarded_total",
        "queued messages thrown away while a peer was unreachable",
        |t| &t.messages_discarded,
    ),
    (
        "holdfast_transport_reconnects_total",
        "peer stream failures followed by a reconnection attempt",
        |t| &t.reconnects,
    ),
    (
        "holdfast_transport_acks_received_total",
        "acks received from peers",
        |t| &t.acks_received,
    ),
    (
        "holdfast_transport_snapshots_sent_total",
        "snapshots a peer received whole",
        |t| &t.snapshots_sent,
    ),
    (
        "holdfast_transport_snapshot_bytes_sent_total",
        "bytes of snapshot data sent whole",
        |t| &t.snapshot_bytes_sent,
    ),
    (
        "holdfast_transport_snapshots_failed_total",
        "snapshot sends that failed or timed out",
        |t| &t.snapshots_failed,
    ),
    (
        "holdfast_transport_snapshots_dropped_total",
        "snapshot sends never started",
        |t| &t.snapshots_dropped,
    ),
    (
        "holdfast_transport_unreachable_reports_total",
        "unreachable reports posted to the driver",
        |t| &t.unreachable_reports,
    ),
];

const RECEIVE_COUNTERS: [Source<ServiceCounters>; 10] = [
    (
        "holdfast_transport_batches_received_total",
        "batches received from peers (and acked)",
        |s| &s.batches_received,
    ),
    (
        "holdfast_transport_messages_delivered_total",
        "received Raft messages handed to the driver",
        |s| &s.messages_delivered,
    ),
    (
        "holdfast_transport_messages_undecodable_total",
        "received messages that did not decode",
        |s| &s.messages_undecodable,
    ),
    (
        "holdfast_transport_messages_misrouted_total",
        "received messages for another shard or node",
        |s| &s.messages_misrouted,
    ),
    (
        "holdfast_transport_messages_refused_by_inbox_total",
        "received messages the driver's inbox refused (full or stopped)",
        |s| &s.messages_dropped,
    ),
    (
        "holdfast_transport_streams_refused_total",
        "peer streams ended for naming another cluster or node",
        |s| &s.streams_refused,
    ),
    (
        "holdfast_transport_snapshots_received_total",
        "snapshots received whole and handed to the driver",
        |s| &s.snapshots_received,
    ),
    (
        "holdfast_transport_snapshot_chunks_received_total",
        "chunks of those snapshots",
        |s| &s.snapshot_chunks_received,
    ),
    (
        "holdfast_transport_snapshot_bytes_received_total",
        "bytes of snapshot data received whole",
        |s| &s.snapshot_bytes_received,
    ),
    (
        "holdfast_transport_snapshots_refused_total",
        "snapshot calls refused",
        |s| &s.snapshots_refused,
    ),
];

/// The pre-filter's refusals (`prefilter_stats`), by layer.
const PREFILTER_COUNTERS: [Source<PrefilterStats>; 2] = [
    (
        "holdfast_prefilter_sold_out_refusals_total",
        "reserves refused before the log by the sold-out pre-filter (OUT_OF_STOCK, prefilter=true)",
        |s| &s.sold_out,
    ),
    (
        "holdfast_prefilter_admission_refusals_total",
        "reserves refused before the log by hot-SKU admission (RESOURCE_EXHAUSTED, ADMISSION_LIMIT)",
        |s| &s.admission_limit,
    ),
];

fn copied<T: Send + Sync + 'static>(
    sources: &[Source<T>],
    owner: &Arc<T>,
    out: &mut Vec<CopiedCounter>,
) {
    for &(name, help, field) in sources {
        metrics::describe_counter!(name, help);
        let owner = owner.clone();
        out.push(CopiedCounter {
            counter: metrics::counter!(name),
            read: Box::new(move || field(&owner).load(Ordering::Relaxed)),
        });
    }
}

impl NodeTelemetry {
    /// Handles for `shards` shards, reading the driver's counters from
    /// `routing`, the transport's from `sent` and `received`, and the
    /// pre-filter's from `prefilter`.
    pub fn new(
        shards: u32,
        routing: &Arc<Routing>,
        sent: &Arc<TransportCounters>,
        received: &Arc<ServiceCounters>,
        prefilter: &Arc<PrefilterStats>,
    ) -> Self {
        let mut counters = Vec::new();
        copied(&DRIVER_COUNTERS, routing, &mut counters);
        copied(&SEND_COUNTERS, sent, &mut counters);
        copied(&RECEIVE_COUNTERS, received, &mut counters);
        copied(&PREFILTER_COUNTERS, prefilter, &mut counters);
        describe_shard_gauges();
        NodeTelemetry {
            counters,
            shards: (0..shards).map(ShardGauges::new).collect(),
            serving: metrics::gauge!(SERVING_METRIC),
        }
    }

    /// Copies every counter's current total.
    pub fn publish_counters(&self) {
        for c in &self.counters {
            c.counter.absolute((c.read)());
        }
    }

    /// Sets each shard's gauges from a status reply.
    pub fn publish_shards(&self, status: &[ShardStatus]) {
        for s in status {
            if let Some(g) = self.shards.get(s.shard as usize) {
                g.leader.set(s.leader as f64);
                g.term.set(s.term as f64);
                g.commit.set(s.commit as f64);
                g.applied.set(s.applied as f64);
                g.reservations.set(s.reservations as f64);
                g.pending.set(s.pending as f64);
            }
        }
    }

    /// Sets the health gauge.
    pub fn publish_serving(&self, serving: bool) {
        self.serving.set(if serving { 1.0 } else { 0.0 });
    }
}

fn describe_shard_gauges() {
    metrics::describe_gauge!(
        "holdfast_shard_leader_id",
        "the shard's leader as this node knows it (0: none known)"
    );
    metrics::describe_gauge!("holdfast_shard_term", "the shard's Raft term on this node");
    metrics::describe_gauge!(
        "holdfast_shard_commit_index",
        "the shard's commit index as this node knows it"
    );
    metrics::describe_gauge!(
        "holdfast_shard_applied_index",
        "the shard's last log index applied to this node's ledger"
    );
    metrics::describe_gauge!(
        "holdfast_shard_reservations_retained",
        "reservations the shard's ledger retains: pending holds plus resolved ones still remembered for retries"
    );
    metrics::describe_gauge!(
        "holdfast_shard_holds_pending",
        "reservations of the shard pending on this node: held, not yet confirmed, released or expired"
    );
}
