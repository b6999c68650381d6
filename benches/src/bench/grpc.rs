//! Holdfast (and the gRPC floor, which speaks the same service) as a
//! target: clusters of real `holdfast-server` processes started with
//! [`LocalCluster`], stocked through the Rust client (`holdfast-client`,
//! which routes to leaders and retries with the same request ids), and
//! loaded through plain tonic stubs.
//!
//! Why plain stubs for the load: the floor is measured through the very
//! same code path (one HTTP/2 connection per target, the request built the
//! same way), so "÷ floor" compares the servers and nothing else. Each
//! call goes straight to its shard's leader, as the client would send it,
//! and is marked as a first attempt (`x-holdfast-first-attempt`), as the
//! client marks a call whose request id it made, so the sold-out
//! pre-filter applies as it would in production.

use crate::bench::scenario::{
    Catalogue, Order, FLASH_SKU, FLASH_UNITS, HOT_LOCATION, HOT_SKU, LOCATIONS, SHARDS,
    UNLIMITED_UNITS,
};
use crate::bench::target::{BatchReply, Reply};
use crate::local::{channel, free_port, sibling_binary, LocalCluster};
use futures_util::stream::{self, StreamExt};
use holdfast_engine::shard_of;
use holdfast_server::pb::inventory as pb;
use holdfast_server::pb::inventory::inventory_client::InventoryClient;
use holdfast_server::service::FIRST_ATTEMPT_HEADER;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;
use tonic::{Code, Status};
use tonic_types::StatusExt;

/// First pause before a flash buyer's reserve is sent again.
const RETRY_PAUSE_MIN: Duration = Duration::from_millis(10);
/// Longest pause between two attempts (an election takes 300-600 ms).
const RETRY_PAUSE_MAX: Duration = Duration::from_millis(200);
/// Stocking calls in flight at once.
const STOCK_CALLS_IN_FLIGHT: usize = 128;
/// Deadline of one stocking call, retries included: long enough for the
/// first leader election of a fresh cluster.
const STOCK_CALL_DEADLINE: Duration = Duration::from_secs(30);

/// A cluster of `holdfast-server` processes and the temp dir of its data.
pub struct HoldfastCluster {
    /// The processes (stopped when dropped).
    pub nodes: LocalCluster,
    /// Nodes in the cluster.
    pub size: usize,
    /// Holds the nodes' data; removed when dropped, after the nodes.
    pub dir: tempfile::TempDir,
}

impl HoldfastCluster {
    /// Starts `size` nodes (fsync on, [`SHARDS`] shards), their logs in
    /// `log_dir`.
    pub fn start(size: usize, log_dir: &Path) -> Result<HoldfastCluster, String> {
        let binary = sibling_binary("holdfast-server");
        if !binary.is_file() {
            return Err(format!(
                "{} is missing (cargo build -p holdfast-server builds it)",
                binary.display()
            ));
        }
        let dir = tempfile::Builder::new()
            .prefix("holdfast-bench-hf")
            .tempdir()
            .map_err(|e| e.to_string())?;
        let logs = log_dir.join(format!("holdfast-{size}n"));
        std::fs::create_dir_all(&logs).map_err(|e| e.to_string())?;
        let ports = (0..size).map(|_| free_port()).collect();
        let nodes = LocalCluster::start(ports, SHARDS, dir.path(), Some(&logs));
        Ok(HoldfastCluster { nodes, size, dir })
    }

    /// Creates the locations and stocks the catalogue, the hot row and the
    /// flash row, through the Rust client.
    pub async fn stock(&self, catalogue: Catalogue) -> Result<(), String> {
        use holdfast_client::{AdjustStock, Client, ClientOptions, UpsertLocation};
        // Until every shard has a leader the nodes may not even listen.
        self.nodes.leaders().await;
        let endpoints: Vec<String> = self
            .nodes
            .ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        let options = ClientOptions {
            shards: Some(SHARDS),
            ..ClientOptions::default()
        };
        let client = Client::connect(&endpoints, options)
            .await
            .map_err(|e| e.to_string())?
            .with_deadline(STOCK_CALL_DEADLINE);
        for (i, location) in LOCATIONS.iter().enumerate() {
            client
                .upsert_location(
                    UpsertLocation::new(*location, "eu", i as u32 + 1)
                        .request_id(format!("bench-location-{location}")),
                )
                .await
                .map_err(|e| format!("location {location}: {e}"))?;
        }
        let catalogue_rows = (0..catalogue.skus).flat_map(|i| {
            LOCATIONS
                .iter()
                .map(move |l| (Catalogue::sku(i), *l, UNLIMITED_UNITS))
        });
        let extra = [
            (HOT_SKU.to_string(), HOT_LOCATION, UNLIMITED_UNITS),
            (FLASH_SKU.to_string(), HOT_LOCATION, FLASH_UNITS),
        ];
        let mut results = stream::iter(catalogue_rows.chain(extra))
            .map(|(sku, location, units)| {
                let client = client.clone();
                async move {
                    let id = format!("bench-stock-{sku}-{location}");
                    client
                        .adjust_stock(AdjustStock::new(sku, location, units).request_id(id))
                        .await
                }
            })
            .buffer_unordered(STOCK_CALLS_IN_FLIGHT);
        while let Some(r) = results.next().await {
            r.map_err(|e| format!("stock: {e}"))?;
        }
        Ok(())
    }

    /// Stubs to every shard's leader once leaders have settled on their
    /// preferred nodes, `connections` HTTP/2 connections per node.
    pub async fn target(&self, connections: usize) -> GrpcTarget {
        let leaders = self.nodes.balanced_leaders().await;
        GrpcTarget::new(&leaders, connections)
    }
}

/// Stubs to the servers of one system: for each shard, `connections`
/// stubs to its leader (each on its own HTTP/2 connection).
#[derive(Clone)]
pub struct GrpcTarget {
    by_shard: Arc<Vec<Vec<InventoryClient<Channel>>>>,
}

impl GrpcTarget {
    /// Stubs for the leader ports of every shard (`ports[shard]`; the
    /// floor: its one port for every shard).
    pub fn new(ports: &[u16], connections: usize) -> GrpcTarget {
        let mut per_port: Vec<(u16, Vec<InventoryClient<Channel>>)> = Vec::new();
        let by_shard = ports
            .iter()
            .map(|&port| {
                if let Some((_, stubs)) = per_port.iter().find(|(p, _)| *p == port) {
                    return stubs.clone();
                }
                let stubs: Vec<_> = (0..connections.max(1))
                    .map(|_| InventoryClient::new(channel(port)))
                    .collect();
                per_port.push((port, stubs.clone()));
                stubs
            })
            .collect();
        GrpcTarget {
            by_shard: Arc::new(by_shard),
        }
    }

    fn stub(&self, shard: u32, caller: usize) -> InventoryClient<Channel> {
        let stubs = &self.by_shard[shard as usize % self.by_shard.len()];
        stubs[caller % stubs.len()].clone()
    }

    fn shard_of_order(order: &Order) -> u32 {
        order.first().map_or(0, |l| shard_of(&l.sku, SHARDS))
    }

    /// Holds `order` under `id` at its shard's leader.
    pub async fn reserve(&self, caller: usize, id: &str, order: &Order, ttl_ms: u64) -> Reply {
        let mut stub = self.stub(Self::shard_of_order(order), caller);
        let mut request = tonic::Request::new(reserve_request(id, caller, order, ttl_ms));
        request
            .metadata_mut()
            .insert(FIRST_ATTEMPT_HEADER, MetadataValue::from_static("1"));
        match stub.reserve(request).await {
            Ok(r) => Reply::Held(r.into_inner().reservation_id),
            Err(status) => classify(&status),
        }
    }

    /// Holds `order` under `id` as `holdfast-client` does for a buyer: the
    /// first attempt marked as such (so the pre-filter and admission may
    /// answer it); after an admission refusal (`RESOURCE_EXHAUSTED`, never
    /// proposed) the same request, still marked, after a pause; after no
    /// answer from the ledger (no leader, a dropped proposal, a broken
    /// connection) the same request unmarked (it may have been applied),
    /// until `deadline`, so it gets its first answer.
    pub async fn reserve_until_answered(
        &self,
        caller: usize,
        id: &str,
        order: &Order,
        ttl_ms: u64,
        deadline: Instant,
    ) -> Attempts {
        let mut stub = self.stub(Self::shard_of_order(order), caller);
        let mut pause = RETRY_PAUSE_MIN;
        let mut attempts = Attempts::default();
        // Every attempt so far was refused by admission: never proposed.
        let mut unproposed = true;
        loop {
            let mut request = tonic::Request::new(reserve_request(id, caller, order, ttl_ms));
            if unproposed {
                request
                    .metadata_mut()
                    .insert(FIRST_ATTEMPT_HEADER, MetadataValue::from_static("1"));
            }
            let sent = Instant::now();
            let answer = stub.reserve(request).await;
            attempts.last_call = sent.elapsed();
            let status = match answer {
                Ok(r) => {
                    attempts.reply = Reply::Held(r.into_inner().reservation_id);
                    return attempts;
                }
                Err(status) => status,
            };
            attempts.reply = classify(&status);
            let shed = attempts.reply == Reply::Shed;
            unproposed &= shed;
            let again = shed
                || matches!(
                    status.code(),
                    Code::Unavailable | Code::Aborted | Code::Unknown | Code::Cancelled
                );
            if !again || Instant::now() + pause >= deadline {
                return attempts;
            }
            if shed {
                attempts.shed += 1;
            } else {
                attempts.unanswered += 1;
            }
            tokio::time::sleep(pause).await; // backoff between attempts, as the client's
            pause = (pause * 2).min(RETRY_PAUSE_MAX);
        }
    }

    /// `ReserveBatch` of `items`, sent to the leader of the first item's
    /// shard.
    pub async fn reserve_batch(&self, items: &[(String, Order)], ttl_ms: u64) -> BatchReply {
        let shard = items.first().map_or(0, |(_, o)| Self::shard_of_order(o));
        let reservations = items
            .iter()
            .enumerate()
            .map(|(k, (id, order))| reserve_request(id, k, order, ttl_ms))
            .collect();
        let mut stub = self.stub(shard, 0);
        let mut reply = BatchReply::default();
        match stub
            .reserve_batch(pb::ReserveBatchRequest { reservations })
            .await
        {
            Ok(r) => {
                for item in &r.get_ref().results {
                    match &item.result {
                        Some(pb::reserve_batch_result::Result::Reserved(_)) => reply.held += 1,
                        Some(pb::reserve_batch_result::Result::Error(e)) => {
                            match Code::from_i32(e.code) {
                                Code::FailedPrecondition => reply.refused += 1,
                                Code::ResourceExhausted => reply.shed += 1,
                                _ => reply.errors += 1,
                            }
                        }
                        None => reply.errors += 1,
                    }
                }
                let answered = reply.held + reply.refused + reply.shed + reply.errors;
                reply.errors += (items.len() as u64).saturating_sub(answered);
            }
            Err(_) => reply.errors = items.len() as u64,
        }
        reply
    }

    /// Confirms all of reservation `held`.
    pub async fn confirm(&self, held: &str, request_id: &str) -> Reply {
        let mut stub = self.stub(reservation_shard(held), 0);
        let request = pb::ConfirmRequest {
            request_id: request_id.to_string(),
            reservation_id: held.to_string(),
            quantities: vec![],
        };
        match stub.confirm(request).await {
            Ok(_) => Reply::Done,
            Err(status) => classify(&status),
        }
    }

    /// Releases reservation `held`.
    pub async fn release(&self, held: &str, request_id: &str) -> Reply {
        let mut stub = self.stub(reservation_shard(held), 0);
        let request = pb::ReleaseRequest {
            request_id: request_id.to_string(),
            reservation_id: held.to_string(),
        };
        match stub.release(request).await {
            Ok(_) => Reply::Done,
            Err(status) => classify(&status),
        }
    }
}

/// The shard a reservation id (`"<shard>-<n>"`) names; 0 if malformed.
fn reservation_shard(id: &str) -> u32 {
    id.split('-')
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// A `Reserve` of `order` as caller `caller`'s cart.
fn reserve_request(id: &str, caller: usize, order: &Order, ttl_ms: u64) -> pb::ReserveRequest {
    pb::ReserveRequest {
        request_id: id.to_string(),
        owner_id: format!("cart-{caller}"),
        customer_id: format!("cust-{caller}"),
        lines: order
            .iter()
            .map(|l| pb::ReserveLine {
                sku: l.sku.clone(),
                quantity: l.quantity,
                location: Some(l.location.to_string()),
            })
            .collect(),
        ttl_ms,
        policy: 0,
        allow_split: false,
        region: None,
    }
}

/// How a buyer's reserve ended, and what it took.
#[derive(Debug, Clone)]
pub struct Attempts {
    /// The final answer.
    pub reply: Reply,
    /// Admission refusals received, each followed by the same request
    /// again (still a first attempt).
    pub shed: u32,
    /// Attempts the ledger did not answer, each sent again unmarked.
    pub unanswered: u32,
    /// Latency of the call that gave the final answer.
    pub last_call: Duration,
}

impl Default for Attempts {
    fn default() -> Attempts {
        Attempts {
            reply: Reply::Error("no attempt".into()),
            shed: 0,
            unanswered: 0,
            last_call: Duration::ZERO,
        }
    }
}

/// What a refusal of the server means to the harness.
pub fn classify(status: &Status) -> Reply {
    match status.code() {
        Code::FailedPrecondition => Reply::Refused {
            prefilter: status
                .get_details_error_info()
                .is_some_and(|i| i.metadata.get("prefilter").map(String::as_str) == Some("true")),
        },
        Code::ResourceExhausted => Reply::Shed,
        _ => Reply::Error(format!("{:?}: {}", status.code(), status.message())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservation_ids_name_their_shard() {
        assert_eq!(reservation_shard("5-1234"), 5);
        assert_eq!(reservation_shard("garbage"), 0);
    }

    #[test]
    fn prefilter_refusals_are_told_apart() {
        let filtered = Status::with_error_details(
            Code::FailedPrecondition,
            "sold out",
            tonic_types::ErrorDetails::with_error_info(
                "OUT_OF_STOCK",
                "holdfast.dev",
                [("prefilter".to_string(), "true".to_string())],
            ),
        );
        assert_eq!(classify(&filtered), Reply::Refused { prefilter: true });
        let ledger = Status::failed_precondition("out of stock");
        assert_eq!(classify(&ledger), Reply::Refused { prefilter: false });
        assert_eq!(classify(&Status::resource_exhausted("busy")), Reply::Shed);
        assert!(matches!(
            classify(&Status::unavailable("down")),
            Reply::Error(_)
        ));
    }
}
