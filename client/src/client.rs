//! [`Client`]: one handle on a cluster, shared by any number of tasks.
//!
//! Unit of work: one *call* (one RPC as the caller sees it), made of one or
//! more *attempts*. Every attempt of a call sends the same message, hence
//! the same request id, so the ledger applies a mutating call at most once
//! however often it is retried (design §1.3). An attempt goes to the node
//! the [`routing`](crate::routing) view picks, is bounded by the attempt
//! timeout and by what is left of the call's deadline, and ends in one of
//! the dispositions of [`error::disposition`]: return, follow the leader
//! hint at once, or pause (capped exponential backoff with jitter,
//! [`retry`](crate::retry)) and try again here or elsewhere.
//!
//! Everything runs on the caller's Tokio runtime; the only task the client
//! spawns itself is a leader-cache refresh (`Admin.ClusterStatus` on every
//! known node), at most one at a time and at most one per
//! `refresh_interval_min`.

use crate::error::{self, Disposition, Error};
use crate::ids::{new_request_id, reservation_shard};
use crate::pb::internal::admin_client::AdminClient;
use crate::pb::internal::{ClusterStatusRequest, ClusterStatusResponse};
use crate::pb::inventory as pb;
use crate::pb::inventory::inventory_client::InventoryClient;
use crate::retry::{Backoff, RetryPolicy};
use crate::routing::{shard_of, Topology};
use crate::types::*;
use crate::watch::{EventStream, WatchEvents};

/// Metadata key marking the first attempt of a request whose id was made
/// for it: only such a request may be refused by the node's sold-out
/// pre-filter, whose quick refusal could otherwise hide an earlier attempt
/// that applied (design §1.3).
pub const FIRST_ATTEMPT_HEADER: &str = "x-holdfast-first-attempt";
use parking_lot::Mutex;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

/// Settings of a [`Client`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientOptions {
    /// Deadline of a call when the caller sets none
    /// ([`Client::with_deadline`]): every attempt and pause must fit in it.
    /// Default 10 s: a leader election (0.3–0.6 s) plus several retries
    /// fit with room to spare, and a caller is not left waiting on a
    /// cluster that has lost its quorum.
    pub deadline: Duration,
    /// Longest single attempt. Default 3 s: longer than a linearizable
    /// read may wait on the server (2 s), short enough that a hung node
    /// (stopped, partitioned) leaves time to try another.
    pub attempt_timeout: Duration,
    /// TCP connect timeout per node. Default 1 s.
    pub connect_timeout: Duration,
    /// Timeout of each node's `ClusterStatus` answer (connect, leader
    /// refresh, [`Client::cluster_status`]). Default 1 s.
    pub status_timeout: Duration,
    /// Backoff and attempt limit.
    pub retry: RetryPolicy,
    /// The cluster's shard count, if the caller knows it; otherwise learned
    /// from `ClusterStatus` (until then every call goes to any node).
    pub shards: Option<u32>,
    /// Least time between two leader-cache refreshes. Default 250 ms.
    pub refresh_interval_min: Duration,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            deadline: Duration::from_secs(10),
            attempt_timeout: Duration::from_secs(3),
            connect_timeout: Duration::from_secs(1),
            status_timeout: Duration::from_secs(1),
            retry: RetryPolicy::default(),
            shards: None,
            refresh_interval_min: Duration::from_millis(250),
        }
    }
}

/// Counters since the client was made (all clones share them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ClientStats {
    /// Calls started.
    pub calls: u64,
    /// Attempts sent (calls plus retries).
    pub attempts: u64,
    /// Attempts answered with a leader hint that was then followed.
    pub redirects: u64,
    /// Attempts that found their node down (refused, reset, timed out).
    pub node_failures: u64,
    /// Leader-cache refreshes done.
    pub refreshes: u64,
}

#[derive(Default)]
struct Counters {
    calls: AtomicU64,
    attempts: AtomicU64,
    redirects: AtomicU64,
    node_failures: AtomicU64,
    refreshes: AtomicU64,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

#[derive(Default)]
struct RefreshState {
    running: bool,
    last_started: Option<Instant>,
}

struct Inner {
    options: ClientOptions,
    topology: Mutex<Topology>,
    refresh: Mutex<RefreshState>,
    counters: Counters,
}

/// A handle on a Holdfast cluster: cheap to clone, safe to share between
/// tasks; must be used inside a Tokio runtime.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
    /// Deadline of this handle's calls.
    deadline: Duration,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("nodes", &self.nodes())
            .field("deadline", &self.deadline)
            .finish()
    }
}

/// Where the attempts of a call go.
#[derive(Debug, Clone)]
enum Route {
    /// Any node (it forwards, or fans out).
    Any,
    /// The leader of this shard.
    Shard(u32),
    /// The leader of the shard of these SKUs if they share one, else any.
    Skus(Vec<String>),
}

impl Route {
    fn shard(&self, shards: Option<u32>) -> Option<u32> {
        match self {
            Route::Any => None,
            Route::Shard(s) => Some(*s),
            Route::Skus(skus) => {
                let n = shards?;
                let mut it = skus.iter().map(|s| shard_of(s, n));
                let first = it.next()?;
                it.all(|s| s == first).then_some(first)
            }
        }
    }
}

/// A status report of one node, or why there is none.
type Report = (usize, String, Result<ClusterStatusResponse, Error>);

impl Client {
    /// A client of the cluster whose nodes include `endpoints` (`host:port`
    /// or `http://host:port`; any subset of the nodes will do, the others
    /// are learned from leader hints). Asks every node for its status
    /// first, to learn the shard count and leaders; fails with
    /// [`Error::Unavailable`] if none answers within `status_timeout`.
    pub async fn connect(endpoints: &[String], options: ClientOptions) -> Result<Client, Error> {
        let client = Client::connect_lazy(endpoints, options)?;
        let reports = client.inner.refresh().await;
        if !reports.iter().any(|(_, _, r)| r.is_ok()) {
            let why: Vec<String> = reports
                .iter()
                .filter_map(|(_, a, r)| r.as_ref().err().map(|e| format!("{a}: {e}")))
                .collect();
            return Err(Error::Unavailable {
                shard: None,
                leader_hint: None,
                message: format!("no node answered: {}", why.join("; ")),
            });
        }
        Ok(client)
    }

    /// A client that dials nothing until its first call (then it routes to
    /// any node until it has learned the shards and their leaders).
    pub fn connect_lazy(endpoints: &[String], options: ClientOptions) -> Result<Client, Error> {
        let topology = Topology::new(endpoints, options.shards, options.connect_timeout)?;
        Ok(Client {
            deadline: options.deadline,
            inner: Arc::new(Inner {
                options,
                topology: Mutex::new(topology),
                refresh: Mutex::new(RefreshState::default()),
                counters: Counters::default(),
            }),
        })
    }

    /// The same client with another deadline for its calls (the handle is
    /// cheap: it shares connections and caches with `self`).
    pub fn with_deadline(&self, deadline: Duration) -> Client {
        Client {
            inner: self.inner.clone(),
            deadline,
        }
    }

    /// The deadline of this handle's calls.
    pub fn deadline(&self) -> Duration {
        self.deadline
    }

    /// Addresses of every node the client knows.
    pub fn nodes(&self) -> Vec<String> {
        let t = self.inner.topology.lock();
        t.nodes().map(|(_, n)| n.address.clone()).collect()
    }

    /// The cluster's shard count, once known.
    pub fn shards(&self) -> Option<u32> {
        self.inner.topology.lock().shards()
    }

    /// The shard of `sku`, once the shard count is known.
    pub fn shard_of(&self, sku: &str) -> Option<u32> {
        self.shards().map(|n| shard_of(sku, n))
    }

    /// The address the client would send a call for `shard` to now, if it
    /// has a leader cached.
    pub fn cached_leader(&self, shard: u32) -> Option<String> {
        let t = self.inner.topology.lock();
        t.leader(shard).map(|i| t.node(i).address.clone())
    }

    /// The client's counters.
    pub fn stats(&self) -> ClientStats {
        let c = &self.inner.counters;
        ClientStats {
            calls: c.calls.load(Ordering::Relaxed),
            attempts: c.attempts.load(Ordering::Relaxed),
            redirects: c.redirects.load(Ordering::Relaxed),
            node_failures: c.node_failures.load(Ordering::Relaxed),
            refreshes: c.refreshes.load(Ordering::Relaxed),
        }
    }

    /// Holds stock (`Reserve`), at the leader of the lines' shard.
    pub async fn reserve(&self, request: Reserve) -> Result<Reservation, Error> {
        let fresh = request.request_id.is_none();
        let request_id = request.request_id.clone().unwrap_or_else(new_request_id);
        let route = Route::Skus(
            request
                .lines
                .iter()
                .take(1)
                .map(|l| l.sku.clone())
                .collect(),
        );
        let message = request.to_pb(request_id.clone());
        let r = self
            .unary_call(
                route,
                Some(&request_id),
                fresh,
                message,
                |ch, rq| async move { InventoryClient::new(ch).reserve(rq).await },
            )
            .await?;
        Ok(Reservation::from_pb(request_id, r))
    }

    /// Many independent reservations in one call (`ReserveBatch`, at most
    /// 1,000): one answer per item, in order, each what `reserve` would
    /// have returned. The call goes to the leader of the first item's
    /// shard (the node sends items of other shards on to their leaders);
    /// it is retried whole like any call, which is safe since every item
    /// keeps its request id. Items that failed with a retryable error
    /// (`Error::is_retryable`) can be sent again with the same ids.
    pub async fn reserve_batch(
        &self,
        requests: Vec<Reserve>,
    ) -> Result<Vec<Result<Reservation, Error>>, Error> {
        let ids: Vec<String> = requests
            .iter()
            .map(|r| r.request_id.clone().unwrap_or_else(new_request_id))
            .collect();
        let route = Route::Skus(
            requests
                .iter()
                .flat_map(|r| r.lines.iter().take(1))
                .take(1)
                .map(|l| l.sku.clone())
                .collect(),
        );
        let message = pb::ReserveBatchRequest {
            reservations: requests
                .iter()
                .zip(&ids)
                .map(|(r, id)| r.to_pb(id.clone()))
                .collect(),
        };
        let r = self
            .unary(route, None, message, |ch, rq| async move {
                InventoryClient::new(ch).reserve_batch(rq).await
            })
            .await?;
        if r.results.len() != ids.len() {
            return Err(Error::from_status(
                &Status::internal("the node answered another number of items"),
                None,
            ));
        }
        Ok(r.results
            .into_iter()
            .zip(ids)
            .map(|(item, id)| match item.result {
                Some(pb::reserve_batch_result::Result::Reserved(r)) => {
                    Ok(Reservation::from_pb(id, r))
                }
                Some(pb::reserve_batch_result::Result::Error(e)) => {
                    Err(Error::from_item(&e, Some(&id)))
                }
                None => Err(Error::from_status(
                    &Status::internal("an item came back empty"),
                    Some(&id),
                )),
            })
            .collect())
    }

    /// Turns a pending reservation into a sale (`Confirm`).
    pub async fn confirm(&self, request: Confirm) -> Result<Confirmed, Error> {
        let request_id = request.request_id.unwrap_or_else(new_request_id);
        let message = pb::ConfirmRequest {
            request_id: request_id.clone(),
            reservation_id: request.reservation_id,
            quantities: request.quantities,
        };
        let route = reservation_route(&message.reservation_id);
        let r = self
            .unary(route, Some(&request_id), message, |ch, rq| async move {
                InventoryClient::new(ch).confirm(rq).await
            })
            .await?;
        Ok(Confirmed {
            request_id,
            reservation_id: r.reservation_id,
            units_confirmed: r.units_confirmed,
            units_released: r.units_released,
        })
    }

    /// Gives a pending reservation's units back (`Release`).
    pub async fn release(&self, request: Release) -> Result<Released, Error> {
        let request_id = request.request_id.unwrap_or_else(new_request_id);
        let message = pb::ReleaseRequest {
            request_id: request_id.clone(),
            reservation_id: request.reservation_id,
        };
        let route = reservation_route(&message.reservation_id);
        let r = self
            .unary(route, Some(&request_id), message, |ch, rq| async move {
                InventoryClient::new(ch).release(rq).await
            })
            .await?;
        Ok(Released {
            request_id,
            reservation_id: r.reservation_id,
            units_released: r.units_released,
        })
    }

    /// Moves a pending reservation's expiry to now + `ttl_ms` (`Extend`).
    pub async fn extend(&self, request: Extend) -> Result<Extended, Error> {
        let request_id = request.request_id.unwrap_or_else(new_request_id);
        let message = pb::ExtendRequest {
            request_id: request_id.clone(),
            reservation_id: request.reservation_id,
            ttl_ms: request.ttl_ms,
        };
        let route = reservation_route(&message.reservation_id);
        let r = self
            .unary(route, Some(&request_id), message, |ch, rq| async move {
                InventoryClient::new(ch).extend(rq).await
            })
            .await?;
        Ok(Extended {
            request_id,
            reservation_id: r.reservation_id,
            expires_at_ms: r.expires_at_ms,
        })
    }

    /// Receives, counts or writes off stock of one row (`AdjustStock`).
    pub async fn adjust_stock(&self, request: AdjustStock) -> Result<StockAdjusted, Error> {
        let request_id = request.request_id.unwrap_or_else(new_request_id);
        let route = Route::Skus(vec![request.sku.clone()]);
        let message = pb::AdjustStockRequest {
            request_id: request_id.clone(),
            sku: request.sku,
            location: request.location,
            delta: request.delta,
            expected_on_hand: request.expected_on_hand,
        };
        let r = self
            .unary(route, Some(&request_id), message, |ch, rq| async move {
                InventoryClient::new(ch).adjust_stock(rq).await
            })
            .await?;
        Ok(StockAdjusted {
            request_id,
            on_hand: r.on_hand,
            available: r.available,
        })
    }

    /// Creates or changes a location on every shard (`UpsertLocation`; the
    /// node that takes the call fans it out).
    pub async fn upsert_location(
        &self,
        request: UpsertLocation,
    ) -> Result<LocationUpserted, Error> {
        let request_id = request.request_id.unwrap_or_else(new_request_id);
        let message = pb::UpsertLocationRequest {
            request_id: request_id.clone(),
            location: request.location,
            region: request.region,
            priority: request.priority,
        };
        let r = self
            .unary(
                Route::Any,
                Some(&request_id),
                message,
                |ch, rq| async move { InventoryClient::new(ch).upsert_location(rq).await },
            )
            .await?;
        Ok(LocationUpserted {
            request_id,
            created: r.created,
        })
    }

    /// Sets a row's safety stock or backorder allowance, or the SKU's
    /// per-customer limit (`SetPolicy`).
    pub async fn set_policy(&self, request: SetPolicy) -> Result<PolicySet, Error> {
        let request_id = request.request_id.clone().unwrap_or_else(new_request_id);
        let route = Route::Skus(vec![request.sku.clone()]);
        let message = request.to_pb(request_id.clone());
        self.unary(route, Some(&request_id), message, |ch, rq| async move {
            InventoryClient::new(ch).set_policy(rq).await
        })
        .await?;
        Ok(PolicySet { request_id })
    }

    /// Reads the availability of `rows` (`GetAvailability`). Linearizable
    /// reads of one shard go to its leader; stale reads, and reads over
    /// several shards, go to any node (which splits and forwards).
    pub async fn get_availability(
        &self,
        rows: Vec<RowKey>,
        consistency: Consistency,
    ) -> Result<Vec<RowAvailability>, Error> {
        let route = match consistency {
            Consistency::Linearizable => Route::Skus(rows.iter().map(|r| r.sku.clone()).collect()),
            Consistency::Stale => Route::Any,
        };
        let message = pb::GetAvailabilityRequest {
            rows: rows
                .into_iter()
                .map(|r| pb::RowKey {
                    sku: r.sku,
                    location: r.location,
                })
                .collect(),
            consistency: consistency_pb(consistency),
        };
        let r = self
            .unary(route, None, message, |ch, rq| async move {
                InventoryClient::new(ch).get_availability(rq).await
            })
            .await?;
        Ok(r.rows
            .into_iter()
            .map(|r| RowAvailability {
                sku: r.sku,
                location: r.location,
                on_hand: r.on_hand,
                held: r.held,
                available: r.available,
                as_of_index: r.as_of_index,
            })
            .collect())
    }

    /// Reads one reservation (`GetReservation`): linearizable reads go to
    /// its shard's leader, stale ones to any node.
    pub async fn get_reservation(
        &self,
        reservation_id: &str,
        consistency: Consistency,
    ) -> Result<ReservationView, Error> {
        let route = match consistency {
            Consistency::Linearizable => reservation_route(reservation_id),
            Consistency::Stale => Route::Any,
        };
        let message = pb::GetReservationRequest {
            reservation_id: reservation_id.to_string(),
            consistency: consistency_pb(consistency),
        };
        let r = self
            .unary(route, None, message, |ch, rq| async move {
                InventoryClient::new(ch).get_reservation(rq).await
            })
            .await?;
        Ok(reservation_view(r))
    }

    /// One page of an owner's or a customer's reservations
    /// (`ListReservations`). Any node serves it (it forwards to the shard
    /// leaders a linearizable page needs). Pages may be short or empty
    /// while `next_page_token` is set; see [`Client::list_all_reservations`].
    pub async fn list_reservations(
        &self,
        request: ListReservations,
    ) -> Result<ReservationPage, Error> {
        let (owner_id, customer_id) = match request.party {
            Party::Owner(owner) => (owner, String::new()),
            Party::Customer(customer) => (String::new(), customer),
        };
        let state = match request.state {
            None | Some(ReservationState::Unknown) => pb::ReservationState::Unspecified,
            Some(ReservationState::Pending) => pb::ReservationState::Pending,
            Some(ReservationState::Confirmed) => pb::ReservationState::Confirmed,
            Some(ReservationState::Released) => pb::ReservationState::Released,
            Some(ReservationState::Expired) => pb::ReservationState::Expired,
        };
        let message = pb::ListReservationsRequest {
            owner_id,
            customer_id,
            state: state as i32,
            page_size: request.page_size,
            page_token: request.page_token.unwrap_or_default(),
            consistency: consistency_pb(request.consistency),
        };
        let r = self
            .unary(Route::Any, None, message, |ch, rq| async move {
                InventoryClient::new(ch).list_reservations(rq).await
            })
            .await?;
        Ok(ReservationPage {
            reservations: r.reservations.into_iter().map(reservation_view).collect(),
            next_page_token: (!r.next_page_token.is_empty()).then_some(r.next_page_token),
        })
    }

    /// Every page of a listing, concatenated (`request.page_token` is the
    /// starting point). For small listings: a large one is better paged by
    /// the caller.
    pub async fn list_all_reservations(
        &self,
        mut request: ListReservations,
    ) -> Result<Vec<ReservationView>, Error> {
        let mut all = Vec::new();
        loop {
            let page = self.list_reservations(request.clone()).await?;
            all.extend(page.reservations);
            match page.next_page_token {
                Some(token) => request.page_token = Some(token),
                None => return Ok(all),
            }
        }
    }

    /// The ledger's change events (`WatchEvents`) as a stream that
    /// survives node failures: it reconnects to another node and resumes
    /// after the last event it handed out, gap-free and without
    /// duplicates (see [`crate::watch`]).
    pub fn watch_events(&self, watch: WatchEvents) -> EventStream {
        crate::watch::start(self.inner.clone(), watch, self.inner.options.retry)
    }

    /// Every known node's status (`Admin.ClusterStatus`), asked of all at
    /// once, each bounded by `status_timeout`; a node that does not answer
    /// is listed with its error. Also refreshes the leader cache.
    pub async fn cluster_status(&self, with_digest: bool) -> ClusterStatus {
        let reports = self.inner.status_reports(with_digest).await;
        self.inner.apply(&reports);
        let nodes = reports
            .into_iter()
            .map(|(_, address, r)| match r {
                Ok(s) => NodeStatus {
                    address,
                    node_id: Some(s.node_id),
                    shards: s
                        .shards
                        .into_iter()
                        .map(|sh| ShardStatus {
                            shard: sh.shard,
                            leader: (sh.leader != 0).then_some(sh.leader),
                            term: sh.term,
                            commit: sh.commit,
                            applied: sh.applied,
                            reservations: sh.reservations,
                            digest: (!sh.digest.is_empty()).then(|| hex(&sh.digest)),
                        })
                        .collect(),
                    error: None,
                },
                Err(e) => NodeStatus {
                    address,
                    node_id: None,
                    shards: Vec::new(),
                    error: Some(e),
                },
            })
            .collect();
        ClusterStatus { nodes }
    }

    /// One unary call: attempts until success, a final error, the attempt
    /// limit or the deadline. `rpc` sends one attempt on a channel; it is
    /// generic over the service so that new RPCs need only a method that
    /// builds their message and names their route.
    async fn unary<Req, Resp, F, Fut>(
        &self,
        route: Route,
        request_id: Option<&str>,
        message: Req,
        rpc: F,
    ) -> Result<Resp, Error>
    where
        Req: Clone,
        F: Fn(Channel, Request<Req>) -> Fut,
        Fut: Future<Output = Result<Response<Resp>, Status>>,
    {
        self.unary_call(route, request_id, false, message, rpc)
            .await
    }

    /// `unary`, where `fresh` says the request id was made by this client
    /// for this call: its first attempt is then marked as a first attempt
    /// (`FIRST_ATTEMPT_HEADER`), which lets the node answer it from its
    /// sold-out pre-filter. A caller-chosen id may be a retry of an
    /// earlier call, so it is never marked.
    async fn unary_call<Req, Resp, F, Fut>(
        &self,
        route: Route,
        request_id: Option<&str>,
        fresh: bool,
        message: Req,
        rpc: F,
    ) -> Result<Resp, Error>
    where
        Req: Clone,
        F: Fn(Channel, Request<Req>) -> Fut,
        Fut: Future<Output = Result<Response<Resp>, Status>>,
    {
        let inner = &self.inner;
        bump(&inner.counters.calls);
        let started = Instant::now();
        let deadline = started + self.deadline;
        let mut backoff = Backoff::new(inner.options.retry, fastrand::Rng::new());
        let mut attempts = 0u32;
        let mut avoid = None;
        let mut last: Option<Error> = None;
        let mut just_redirected = false;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(deadline_exceeded(attempts, started, request_id, last));
            }
            let (index, channel, shard) = inner.pick(&route, avoid);
            attempts += 1;
            bump(&inner.counters.attempts);
            let timeout = inner.options.attempt_timeout.min(remaining);
            let mut request = Request::new(message.clone());
            request.set_timeout(timeout);
            if fresh && attempts == 1 {
                // Only a first attempt with an id made for it is known to
                // have no earlier answer: only it may be answered by the
                // node's sold-out pre-filter. Every other attempt is
                // answered by the ledger (the first answer, design §1.3).
                request.metadata_mut().insert(
                    FIRST_ATTEMPT_HEADER,
                    tonic::metadata::MetadataValue::from_static("1"),
                );
            }
            let status = match tokio::time::timeout(timeout, rpc(channel, request)).await {
                Ok(Ok(response)) => {
                    inner.after_success(shard);
                    return Ok(response.into_inner());
                }
                Ok(Err(status)) => status,
                Err(_) => Status::deadline_exceeded(format!(
                    "no answer within the attempt timeout of {} ms",
                    timeout.as_millis()
                )),
            };
            let error = Error::from_status(&status, request_id);
            let disposition = error::disposition(&status, &error);
            if disposition == Disposition::Final {
                return Err(error);
            }
            let (pause, next_avoid) =
                inner.after_failure(disposition, index, shard, just_redirected);
            avoid = next_avoid;
            just_redirected = !pause;
            if attempts >= inner.options.retry.attempts_max {
                return Err(error);
            }
            last = Some(error);
            if pause {
                let remaining = deadline.saturating_duration_since(Instant::now());
                match backoff.next_pause(remaining) {
                    Some(p) => tokio::time::sleep(p).await, // backoff between attempts
                    None => return Err(deadline_exceeded(attempts, started, request_id, last)),
                }
            }
        }
    }
}

/// A reservation read back, from its wire form.
fn reservation_view(r: pb::GetReservationResponse) -> ReservationView {
    let state = match pb::ReservationState::try_from(r.state) {
        Ok(pb::ReservationState::Pending) => ReservationState::Pending,
        Ok(pb::ReservationState::Confirmed) => ReservationState::Confirmed,
        Ok(pb::ReservationState::Released) => ReservationState::Released,
        Ok(pb::ReservationState::Expired) => ReservationState::Expired,
        _ => ReservationState::Unknown,
    };
    ReservationView {
        reservation_id: r.reservation_id,
        state,
        owner_id: r.owner_id,
        customer_id: r.customer_id,
        lines: r
            .lines
            .into_iter()
            .map(|l| ReservedLine {
                sku: l.sku,
                location: l.location,
                quantity: l.quantity,
                confirmed: l.confirmed,
            })
            .collect(),
        created_at_ms: r.created_at_ms,
        expires_at_ms: r.expires_at_ms,
        as_of_index: r.as_of_index,
    }
}

impl crate::watch::Nodes for Inner {
    fn pick(&self, avoid: Option<usize>) -> (usize, Channel) {
        let (index, channel, _) = Inner::pick(self, &Route::Any, avoid);
        (index, channel)
    }

    fn address(&self, index: usize) -> String {
        self.topology.lock().node(index).address.clone()
    }

    fn failed(&self, index: usize, disposition: &Disposition) {
        if *disposition == Disposition::NodeDown {
            bump(&self.counters.node_failures);
            self.topology.lock().forget_node(index);
        }
    }
}

/// The wire form of a read consistency.
fn consistency_pb(consistency: Consistency) -> i32 {
    let wire = match consistency {
        Consistency::Linearizable => pb::Consistency::Linearizable,
        Consistency::Stale => pb::Consistency::Stale,
    };
    wire as i32
}

fn reservation_route(reservation_id: &str) -> Route {
    reservation_shard(reservation_id).map_or(Route::Any, Route::Shard)
}

fn deadline_exceeded(
    attempts: u32,
    started: Instant,
    request_id: Option<&str>,
    last: Option<Error>,
) -> Error {
    Error::DeadlineExceeded {
        attempts,
        elapsed_ms: started.elapsed().as_millis() as u64,
        request_id: request_id.map(str::to_string),
        last_error: last.map(Box::new),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Inner {
    /// Learns from a failed attempt on node `index`: follows a leader hint,
    /// forgets a leader that is gone. Returns whether to pause before the
    /// next attempt, and the node that attempt should avoid.
    fn after_failure(
        self: &Arc<Self>,
        disposition: Disposition,
        index: usize,
        shard: Option<u32>,
        just_redirected: bool,
    ) -> (bool, Option<usize>) {
        match disposition {
            Disposition::Final | Disposition::Again => (true, None),
            Disposition::Redirect(hint) => {
                bump(&self.counters.redirects);
                let to = self.topology.lock().learn_leader(shard, &hint);
                // Follow a fresh hint at once; a second one in a row
                // (leaders changing under us) waits like any retry.
                let elsewhere = to.is_ok_and(|to| to != index);
                (just_redirected || !elsewhere, None)
            }
            Disposition::OtherNode => {
                if let Some(s) = shard {
                    self.topology.lock().forget_leader(s);
                }
                self.schedule_refresh();
                (true, Some(index))
            }
            Disposition::NodeDown => {
                bump(&self.counters.node_failures);
                self.topology.lock().forget_node(index);
                self.schedule_refresh();
                (true, Some(index))
            }
        }
    }

    /// The node for the next attempt, its channel, and the call's shard
    /// (when known).
    fn pick(&self, route: &Route, avoid: Option<usize>) -> (usize, Channel, Option<u32>) {
        let mut t = self.topology.lock();
        let shard = route.shard(t.shards());
        let index = t.pick(shard, avoid);
        (index, t.channel(index), shard)
    }

    /// After a success through a node that was not the cached leader (or
    /// before the shards were known), learn the leaders so that the next
    /// call skips the forwarding hop.
    fn after_success(self: &Arc<Self>, shard: Option<u32>) {
        let t = self.topology.lock();
        let cached = match (t.shards(), shard) {
            (None, _) => false,
            (Some(_), Some(s)) => t.leader(s).is_some(),
            (Some(_), None) => true,
        };
        drop(t);
        if !cached {
            self.schedule_refresh();
        }
    }

    /// Starts a background refresh unless one runs or one started less
    /// than `refresh_interval_min` ago.
    fn schedule_refresh(self: &Arc<Self>) {
        {
            let mut r = self.refresh.lock();
            let recent = r
                .last_started
                .is_some_and(|t| t.elapsed() < self.options.refresh_interval_min);
            if r.running || recent {
                return;
            }
            r.running = true;
            r.last_started = Some(Instant::now());
        }
        /// Clears `running` however the task ends.
        struct Done(Arc<Inner>);
        impl Drop for Done {
            fn drop(&mut self) {
                self.0.refresh.lock().running = false;
            }
        }
        let done = Done(self.clone());
        tokio::spawn(async move {
            done.0.refresh().await;
        });
    }

    /// Asks every node for its status and learns from the answers.
    async fn refresh(&self) -> Vec<Report> {
        let reports = self.status_reports(false).await;
        self.apply(&reports);
        reports
    }

    fn apply(&self, reports: &[Report]) {
        bump(&self.counters.refreshes);
        let ok: Vec<(usize, ClusterStatusResponse)> = reports
            .iter()
            .filter_map(|(i, _, r)| r.as_ref().ok().map(|s| (*i, s.clone())))
            .collect();
        let down: Vec<usize> = reports
            .iter()
            .filter(|(_, _, r)| r.is_err())
            .map(|(i, _, _)| *i)
            .collect();
        self.topology.lock().apply_reports(&ok, &down);
    }

    /// `ClusterStatus` of every known node, concurrently, in node order.
    async fn status_reports(&self, with_digest: bool) -> Vec<Report> {
        let nodes: Vec<(usize, String, Channel)> = {
            let mut t = self.topology.lock();
            (0..t.len())
                .map(|i| (i, t.node(i).address.clone(), t.channel(i)))
                .collect()
        };
        let timeout = self.options.status_timeout;
        let mut tasks = tokio::task::JoinSet::new();
        for (i, address, channel) in nodes {
            tasks.spawn(async move {
                let mut request = Request::new(ClusterStatusRequest { with_digest });
                request.set_timeout(timeout);
                let answer = tokio::time::timeout(
                    timeout,
                    AdminClient::new(channel).cluster_status(request),
                )
                .await;
                let result = match answer {
                    Ok(Ok(r)) => Ok(r.into_inner()),
                    Ok(Err(status)) => Err(Error::from_status(&status, None)),
                    Err(_) => Err(Error::Unavailable {
                        shard: None,
                        leader_hint: None,
                        message: format!("no status within {} ms", timeout.as_millis()),
                    }),
                };
                (i, address, result)
            });
        }
        let mut reports = Vec::new();
        while let Some(joined) = tasks.join_next().await {
            if let Ok(report) = joined {
                reports.push(report);
            }
        }
        reports.sort_by_key(|(i, _, _)| *i);
        reports
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_pick_the_shard_of_their_skus() {
        let one = Route::Skus(vec!["SKU-1".into()]);
        assert_eq!(one.shard(None), None, "shards unknown: any node");
        assert_eq!(one.shard(Some(8)), Some(shard_of("SKU-1", 8)));
        // SKU-1 and SKU-2 are on shards 0 and 5 of 8 (pinned in routing).
        let two = Route::Skus(vec!["SKU-1".into(), "SKU-2".into()]);
        assert_eq!(two.shard(Some(8)), None);
        let same = Route::Skus(vec!["SKU-2".into(), "sku-000042".into()]);
        assert_eq!(same.shard(Some(8)), Some(5));
        assert_eq!(Route::Skus(vec![]).shard(Some(8)), None);
        assert_eq!(reservation_route("3-17").shard(Some(8)), Some(3));
        assert_eq!(reservation_route("bogus").shard(Some(8)), None);
    }
}
