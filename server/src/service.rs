//! The `holdfast.inventory.v1.Inventory` gRPC service.
//!
//! Unit of work: one RPC. It turns the request into an engine command (the
//! engine validates fields), finds the shard (`shard_of(sku)`, or the shard
//! a reservation id names), and either proposes on this node's driver when
//! this node leads the shard, or forwards the request once to the leader.
//! A node that cannot reach a leader answers `UNAVAILABLE` with the leader's
//! address when it knows it; the client retries with the same request id.
//! A Reserve whose lines span shards, and a call on a joined reservation
//! id, goes to `crate::cross_shard`, which runs it here as one ordinary
//! request per shard. `ReserveBatch` (`batch`) runs each item's checks as
//! `Reserve` does and proposes each shard's items together.

use crate::admission::{Admission, Admitted};
use crate::cross_shard;
use crate::deadline;
use crate::events::WatchPlan;
use crate::faults::Faults;
use crate::ids::{self, BadId};
use crate::listing::ListPlan;
use crate::node::messages::{AppliedDetail, Inbound, ProposeResult, ReadQuery, ReadResult};
use crate::node::{NodeHandle, SubmitError};
use crate::pb::inventory as pb;
use crate::pb::inventory::inventory_client::InventoryClient;
use crate::prefilter_stats::PrefilterStats;
use crate::status::{self, RefusalContext};
use holdfast_engine::{self as engine, shard_of, Command, CommandKind, Outcome, Success};
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;
use tokio_stream::wrappers::ReceiverStream;
use tonic::metadata::MetadataValue;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request, Response, Status};

mod batch;

pub use batch::RESERVE_BATCH_MAX;

/// Rows one `GetAvailability` may ask for.
pub const AVAILABILITY_ROWS_MAX: usize = 1_000;
/// Deadline applied when the client sets none.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(5);
/// Metadata key marking a request forwarded by another node (a forwarded
/// request is never forwarded again: no loops).
const FORWARDED: &str = "x-holdfast-forwarded";
/// Metadata key a client sets on the first attempt of a request whose id
/// it made for that request. Only such a request is known to have no
/// earlier answer, so only it may be answered by the sold-out pre-filter;
/// any other (a retry, or an id the caller chose and may have sent before)
/// is answered by the ledger: the first answer, design §1.3.
pub const FIRST_ATTEMPT_HEADER: &str = "x-holdfast-first-attempt";
/// Metadata key restricting a fanned-out request (`UpsertLocation`) to one
/// shard: set on the part forwarded to that shard's leader.
const ONLY_SHARD: &str = "x-holdfast-shard";

/// The service of one node.
pub struct InventoryService {
    node: NodeHandle,
    peers: BTreeMap<u64, String>,
    clients: Mutex<BTreeMap<u64, InventoryClient<Channel>>>,
    /// Peers cut off by fault injection: requests are not forwarded there.
    faults: Arc<Faults>,
    /// Hot-SKU admission of the reserves this node proposes.
    admission: Admission,
    /// Refusals of both pre-filter layers, for metrics.
    prefilter_stats: Arc<PrefilterStats>,
}

fn bad_id(e: BadId) -> Status {
    status::invalid(e.field, e.why)
}

impl InventoryService {
    /// A service over `node`, forwarding to `peers` (id → `host:port`).
    pub fn new(node: NodeHandle, peers: BTreeMap<u64, String>) -> Self {
        InventoryService {
            node,
            peers,
            clients: Mutex::new(BTreeMap::new()),
            faults: Arc::default(),
            admission: Admission::default(),
            prefilter_stats: Arc::default(),
        }
    }

    /// Number of shards of the cluster.
    pub(crate) fn shards(&self) -> u32 {
        self.node.shards
    }

    /// Does not forward to peers `faults` blocks (chaos tests; see
    /// [`crate::faults`]).
    pub fn with_faults(mut self, faults: Arc<Faults>) -> Self {
        self.faults = faults;
        self
    }

    /// Counts the pre-filter's refusals in `stats` (shared with the
    /// node's metrics).
    pub fn with_prefilter_stats(mut self, stats: Arc<PrefilterStats>) -> Self {
        self.prefilter_stats = stats;
        self
    }

    fn client(&self, id: u64) -> Option<InventoryClient<Channel>> {
        let mut clients = self.clients.lock();
        if let Some(c) = clients.get(&id) {
            return Some(c.clone());
        }
        let addr = self.peers.get(&id)?;
        let endpoint = Endpoint::from_shared(format!("http://{addr}")).ok()?;
        let channel = endpoint
            .connect_timeout(Duration::from_millis(500))
            .tcp_nodelay(true)
            .connect_lazy();
        let client = InventoryClient::new(channel);
        clients.insert(id, client.clone());
        Some(client)
    }

    /// Proposes `command` on `shard` through this node's driver.
    async fn propose(&self, shard: u32, command: Command) -> Result<ProposeResult, Status> {
        let (tx, rx) = oneshot::channel();
        self.node
            .submit(Inbound::Propose {
                shard,
                command,
                reply: tx,
            })
            .map_err(|e| match e {
                SubmitError::Overloaded => {
                    Status::resource_exhausted("node overloaded; retry with the same request id")
                }
                SubmitError::Stopped => Status::unavailable("node is stopping"),
            })?;
        rx.await.map_err(|_| {
            Status::unavailable("node stopped before answering; retry with the same request id")
        })
    }

    /// Runs `command` on `shard`: locally if this node leads it, else by
    /// forwarding `forward` to the leader.
    async fn execute<Req, Resp, F, Fut>(
        &self,
        request: &Request<Req>,
        shard: u32,
        command: Command,
        forward: F,
    ) -> Result<Executed<Resp>, Status>
    where
        Req: Clone,
        F: FnOnce(InventoryClient<Channel>, Request<Req>) -> Fut,
        Fut: std::future::Future<Output = Result<Response<Resp>, Status>>,
    {
        let forwarded = request.metadata().contains_key(FORWARDED);
        let leader = self.node.routing.leader(shard);
        if let Some(leader) = leader.filter(|&l| l != self.node.id && !forwarded) {
            return self
                .forward(leader, shard, request, forward)
                .await
                .map(Executed::Forwarded);
        }
        match self.propose(shard, command).await? {
            ProposeResult::Applied { outcome, detail } => Ok(Executed::Local(outcome, detail)),
            ProposeResult::NotLeader { leader } => match leader.filter(|&l| l != self.node.id) {
                Some(l) if !forwarded => self
                    .forward(l, shard, request, forward)
                    .await
                    .map(Executed::Forwarded),
                other => Err(status::unavailable(
                    shard,
                    other.and_then(|l| self.peers.get(&l)).map(String::as_str),
                )),
            },
            ProposeResult::Aborted { why } => Err(status::aborted(shard, why)),
        }
    }

    /// Runs a read on this node's driver; a read index that did not arrive
    /// in time becomes `DEADLINE_EXCEEDED` (the caller may retry).
    async fn read(
        &self,
        shard: u32,
        query: ReadQuery,
        linearizable: bool,
    ) -> Result<ReadResult, Status> {
        let (tx, rx) = oneshot::channel();
        self.node
            .submit(Inbound::Read {
                shard,
                query,
                linearizable,
                reply: tx,
            })
            .map_err(|_| Status::unavailable("node overloaded or stopping"))?;
        match rx.await.map_err(|_| Status::unavailable("node stopped"))? {
            ReadResult::TimedOut => Err(Status::deadline_exceeded(format!(
                "shard {shard}: the read index did not arrive in time; retry"
            ))),
            answer => Ok(answer),
        }
    }

    async fn forward<Req, Resp, F, Fut>(
        &self,
        leader: u64,
        shard: u32,
        request: &Request<Req>,
        call: F,
    ) -> Result<Response<Resp>, Status>
    where
        Req: Clone,
        F: FnOnce(InventoryClient<Channel>, Request<Req>) -> Fut,
        Fut: std::future::Future<Output = Result<Response<Resp>, Status>>,
    {
        let hint = self.peers.get(&leader).map(String::as_str);
        if self.faults.is_blocked(leader) {
            return Err(status::unavailable(shard, hint));
        }
        let Some(client) = self.client(leader) else {
            return Err(status::unavailable(shard, hint));
        };
        let mut forwarded = Request::new(request.get_ref().clone());
        forwarded
            .metadata_mut()
            .insert(FORWARDED, MetadataValue::from_static("1"));
        for key in [ONLY_SHARD, FIRST_ATTEMPT_HEADER] {
            if let Some(value) = request.metadata().get(key) {
                forwarded.metadata_mut().insert(key, value.clone());
            }
        }
        forwarded.set_timeout(deadline::forwarded_timeout(
            request.metadata(),
            DEFAULT_DEADLINE,
        ));
        call(client, forwarded).await.map_err(|s| match s.code() {
            // The leader is unreachable: say so with its address.
            Code::Unavailable | Code::Unknown if s.message().contains("transport") => {
                status::unavailable(shard, hint)
            }
            _ => s,
        })
    }

    /// The shard and engine id a wire reservation id names, with the
    /// request id: the common head of Confirm, Release and Extend.
    fn reservation_target(
        &self,
        request_id: &str,
        reservation_id: &str,
    ) -> Result<(engine::RequestId, u32, engine::ReservationId), Status> {
        let request_id = ids::request_id(request_id).map_err(bad_id)?;
        let (shard, reservation) =
            ids::reservation_from_wire(reservation_id, self.node.shards).map_err(bad_id)?;
        Ok((request_id, shard, reservation))
    }

    /// Turns an executed RPC into its answer: a forwarded answer as it came,
    /// a local success through `build` (`None`: an outcome this RPC cannot
    /// produce), a refusal as its status. `skus` names the request's lines.
    fn respond<Resp>(
        &self,
        executed: Executed<Resp>,
        skus: &[String],
        build: impl FnOnce(Success, AppliedDetail) -> Option<Resp>,
    ) -> Result<Response<Resp>, Status> {
        match executed {
            Executed::Forwarded(resp) => Ok(resp),
            Executed::Local(Ok(success), detail) => build(success, detail)
                .map(Response::new)
                .ok_or_else(|| unexpected(&Ok(success))),
            Executed::Local(Err(refusal), detail) => {
                Err(self.refusal_status(&refusal, &detail, skus))
            }
        }
    }

    fn refusal_status(
        &self,
        refusal: &engine::Refusal,
        detail: &AppliedDetail,
        skus: &[String],
    ) -> Status {
        self.refusal_status_with(refusal, detail, &|line| skus.get(line as usize).cloned())
    }

    /// `refusal` as its status, the SKU of a request line given by
    /// `sku_of_line`.
    fn refusal_status_with(
        &self,
        refusal: &engine::Refusal,
        detail: &AppliedDetail,
        sku_of_line: &dyn Fn(u16) -> Option<String>,
    ) -> Status {
        let names = &detail.location_names;
        status::refusal(
            refusal,
            &RefusalContext {
                sku_of_line,
                location_name: &|id| {
                    names
                        .iter()
                        .find(|(i, _)| *i == id.0)
                        .map(|(_, n)| n.clone())
                        .unwrap_or_default()
                },
                as_of_index: detail.index,
            },
        )
    }
}

/// A reservation read from the ledger, as the API shows it.
fn reservation_to_pb(
    wire_id: &str,
    r: crate::node::messages::DumpReservation,
    index: u64,
) -> pb::GetReservationResponse {
    let state = match r.state {
        "pending" => pb::ReservationState::Pending,
        "confirmed" => pb::ReservationState::Confirmed,
        "released" => pb::ReservationState::Released,
        "expired" => pb::ReservationState::Expired,
        _ => pb::ReservationState::Unspecified,
    };
    pb::GetReservationResponse {
        reservation_id: wire_id.to_string(),
        state: state as i32,
        owner_id: r.owner,
        customer_id: r.customer,
        lines: r
            .lines
            .into_iter()
            .map(|(sku, location, quantity, confirmed)| pb::ReservedLine {
                sku,
                location,
                quantity,
                confirmed,
            })
            .collect(),
        created_at_ms: r.created_at_ms,
        expires_at_ms: r.expires_at_ms,
        as_of_index: index,
        parts: Vec::new(),
    }
}

/// Listing steps (each at most `LIST_SCAN_SLOTS` slots of one shard) one
/// `ListReservations` call takes before it returns a page, full or not.
const LIST_STEPS_PER_CALL: usize = 16;

impl InventoryService {
    /// Both pre-filter layers (design §5) for a first attempt of a reserve
    /// in `shard`: the sold-out filter, then, on the shard's leader only
    /// (admission counts what this node proposes; a follower forwards,
    /// header and all), hot-SKU admission. The guard holds the request's
    /// admission places until dropped; each refusal is counted.
    pub(crate) fn prefilter(
        &self,
        shard: u32,
        r: &pb::ReserveRequest,
        policy: engine::FillPolicy,
    ) -> Result<Option<Admitted<'_>>, Status> {
        // One board for both layers: one lookup, one applied state.
        let Some(board) = self.node.routing.board(shard) else {
            return Ok(None);
        };
        if let Some(refusal) = sold_out(&board, r, policy) {
            self.count_sold_out_refusal();
            return Err(refusal);
        }
        if self.node.routing.leader(shard) != Some(self.node.id) {
            return Ok(None);
        }
        match self.admission.admit(&board, r) {
            Ok(admitted) => Ok(Some(admitted)),
            Err(refusal) => {
                PrefilterStats::count(&self.prefilter_stats.admission_limit);
                Err(refusal)
            }
        }
    }

    /// Counts a reserve refused by the sold-out filter (here, or by the
    /// cross-shard coordinator over its parts).
    pub(crate) fn count_sold_out_refusal(&self) {
        PrefilterStats::count(&self.prefilter_stats.sold_out);
    }

    /// The sold-out pre-filter (design §5, layer 1): refuses a reserve that
    /// the shard's stock board, as of this node's applied state, says the
    /// ledger would refuse now: with ALL_OR_NOTHING, a line whose SKU (at
    /// its location, or anywhere) has nothing promisable; with PARTIAL,
    /// every line so. No Raft round trip. Units still held may come back
    /// (the refusal says how many), but until they do the ledger's answer
    /// would be the same; refusing here instead of letting a crowd spin on
    /// retryable admission refusals is what keeps a sold-out flash sale
    /// cheap (a deliberate step beyond design §5's "and no pending holds";
    /// see docs/architecture.md). Its refusal carries `prefilter=true`: it
    /// describes the stock, not this request id's history, which is why
    /// only first attempts (`FIRST_ATTEMPT_HEADER`) are filtered.
    pub(crate) fn sold_out(
        &self,
        shard: u32,
        r: &pb::ReserveRequest,
        policy: engine::FillPolicy,
    ) -> Option<Status> {
        let board = self.node.routing.board(shard)?;
        sold_out(&board, r, policy)
    }
}

/// [`InventoryService::sold_out`] against `board`, a shard's stock board.
fn sold_out(
    board: &engine::StockBoard,
    r: &pb::ReserveRequest,
    policy: engine::FillPolicy,
) -> Option<Status> {
    let mut sold_out = r.lines.iter().enumerate().filter_map(|(i, l)| {
        board
            .scarcity(&l.sku, l.location.as_deref())
            .filter(|s| s.available <= 0)
            .map(|s| (i, l, s))
    });
    let (line, l, s) = match policy {
        engine::FillPolicy::AllOrNothing => sold_out.next()?,
        engine::FillPolicy::Partial => {
            let all: Vec<_> = sold_out.collect();
            if all.len() < r.lines.len() {
                return None;
            }
            all.into_iter().next()?
        }
    };
    let location = l.location.clone().unwrap_or_default();
    Some(status::status(
        Code::FailedPrecondition,
        format!(
            "lines[{line}]: {} of {} requested, none available at {} ({} held; as of log index {}; refused before the log)",
            l.quantity,
            l.sku,
            if location.is_empty() { "every location" } else { &location },
            s.held,
            s.as_of_index
        ),
        "OUT_OF_STOCK",
        &[
            ("line", line.to_string()),
            ("sku", l.sku.clone()),
            ("location", location),
            ("requested", l.quantity.to_string()),
            ("available", s.available.max(0).to_string()),
            ("held", s.held.to_string()),
            ("as_of_index", s.as_of_index.to_string()),
            ("prefilter", "true".into()),
            ("stale", "true".into()),
        ],
    ))
}

/// Where an RPC was served.
enum Executed<Resp> {
    /// Applied here.
    Local(Outcome, AppliedDetail),
    /// Answered by the leader.
    Forwarded(Response<Resp>),
}

fn fill_policy(p: i32) -> Result<engine::FillPolicy, Status> {
    match pb::FillPolicy::try_from(p) {
        Ok(pb::FillPolicy::Unspecified | pb::FillPolicy::AllOrNothing) => {
            Ok(engine::FillPolicy::AllOrNothing)
        }
        Ok(pb::FillPolicy::Partial) => Ok(engine::FillPolicy::Partial),
        Err(_) => Err(status::invalid("policy", "is not a known fill policy")),
    }
}

/// The one shard every line's SKU belongs to (shard 0 for no lines, which
/// the engine refuses), or `None` when the lines span several shards: a
/// cross-shard reserve (`crate::cross_shard`).
fn single_shard<'a>(skus: impl IntoIterator<Item = &'a str>, shards: u32) -> Option<u32> {
    let mut all = skus.into_iter().map(|sku| shard_of(sku, shards));
    let first = all.next().unwrap_or(0);
    all.all(|s| s == first).then_some(first)
}

/// The engine's form of a Reserve request (the engine validates it).
pub(crate) fn engine_reserve(
    r: &pb::ReserveRequest,
    policy: engine::FillPolicy,
) -> engine::Reserve {
    engine::Reserve {
        owner: r.owner_id.clone(),
        customer: r.customer_id.clone(),
        region: r.region.clone(),
        lines: r
            .lines
            .iter()
            .map(|l| engine::ReserveLine {
                sku: l.sku.clone(),
                quantity: l.quantity,
                location: l.location.clone(),
            })
            .collect(),
        ttl_ms: r.ttl_ms,
        policy,
        allow_split: r.allow_split,
    }
}

/// [`engine_reserve`] of a request this node owns: its strings move into
/// the command instead of being copied (the request id stays behind).
fn engine_reserve_owned(r: pb::ReserveRequest, policy: engine::FillPolicy) -> engine::Reserve {
    engine::Reserve {
        owner: r.owner_id,
        customer: r.customer_id,
        region: r.region,
        lines: r
            .lines
            .into_iter()
            .map(|l| engine::ReserveLine {
                sku: l.sku,
                quantity: l.quantity,
                location: l.location,
            })
            .collect(),
        ttl_ms: r.ttl_ms,
        policy,
        allow_split: r.allow_split,
    }
}

/// The answer to a reserve applied on `shard` as `reservation`.
fn reserve_response(
    shard: u32,
    reservation: engine::ReservationId,
    detail: AppliedDetail,
) -> pb::ReserveResponse {
    pb::ReserveResponse {
        reservation_id: ids::reservation_to_wire(shard, reservation),
        allocations: detail
            .allocations
            .into_iter()
            .map(|a| pb::Allocation {
                sku: a.sku,
                location: a.location,
                quantity: a.quantity,
                available_after: a.available_after,
            })
            .collect(),
        expires_at_ms: detail.expires_at_ms.unwrap_or(0),
    }
}

fn unexpected(outcome: &Outcome) -> Status {
    Status::internal(format!("unexpected outcome {outcome:?}"))
}

#[tonic::async_trait]
impl pb::inventory_server::Inventory for InventoryService {
    async fn reserve(
        &self,
        request: Request<pb::ReserveRequest>,
    ) -> Result<Response<pb::ReserveResponse>, Status> {
        let r = request.get_ref();
        let request_id = ids::request_id(&r.request_id).map_err(bad_id)?;
        let skus: Vec<String> = r.lines.iter().map(|l| l.sku.clone()).collect();
        let policy = fill_policy(r.policy)?;
        let Some(shard) = single_shard(skus.iter().map(String::as_str), self.node.shards) else {
            return cross_shard::reserve(self, request, policy).await;
        };
        let first_attempt = request.metadata().contains_key(FIRST_ATTEMPT_HEADER);
        let _admitted = match first_attempt {
            true => self.prefilter(shard, r, policy)?,
            false => None,
        };
        let command = Command {
            request_id,
            kind: CommandKind::Reserve(engine_reserve(r, policy)),
        };
        let executed = self
            .execute(&request, shard, command, |mut c, req| async move {
                c.reserve(req).await
            })
            .await?;
        self.respond(executed, &skus, |success, detail| match success {
            Success::Reserved { reservation } => Some(reserve_response(shard, reservation, detail)),
            _ => None,
        })
    }

    async fn reserve_batch(
        &self,
        request: Request<pb::ReserveBatchRequest>,
    ) -> Result<Response<pb::ReserveBatchResponse>, Status> {
        batch::reserve_batch(self, request).await
    }

    async fn confirm(
        &self,
        request: Request<pb::ConfirmRequest>,
    ) -> Result<Response<pb::ConfirmResponse>, Status> {
        if ids::is_joined(&request.get_ref().reservation_id) {
            return cross_shard::confirm(self, request).await;
        }
        let r = request.get_ref();
        let (request_id, shard, reservation) =
            self.reservation_target(&r.request_id, &r.reservation_id)?;
        let command = Command {
            request_id,
            kind: CommandKind::Confirm(engine::Confirm {
                reservation,
                quantities: (!r.quantities.is_empty()).then(|| r.quantities.clone()),
            }),
        };
        let wire_id = r.reservation_id.clone();
        let executed = self
            .execute(&request, shard, command, |mut c, req| async move {
                c.confirm(req).await
            })
            .await?;
        self.respond(executed, &[], |success, _| match success {
            Success::Confirmed {
                units_confirmed,
                units_released,
                ..
            } => Some(pb::ConfirmResponse {
                reservation_id: wire_id,
                units_confirmed: units_confirmed as i64,
                units_released: units_released as i64,
            }),
            _ => None,
        })
    }

    async fn release(
        &self,
        request: Request<pb::ReleaseRequest>,
    ) -> Result<Response<pb::ReleaseResponse>, Status> {
        if ids::is_joined(&request.get_ref().reservation_id) {
            return cross_shard::release(self, request).await;
        }
        let r = request.get_ref();
        let (request_id, shard, reservation) =
            self.reservation_target(&r.request_id, &r.reservation_id)?;
        let command = Command {
            request_id,
            kind: CommandKind::Release(engine::Release { reservation }),
        };
        let wire_id = r.reservation_id.clone();
        let executed = self
            .execute(&request, shard, command, |mut c, req| async move {
                c.release(req).await
            })
            .await?;
        self.respond(executed, &[], |success, _| match success {
            Success::Released { units_released, .. } => Some(pb::ReleaseResponse {
                reservation_id: wire_id,
                units_released: units_released as i64,
            }),
            _ => None,
        })
    }

    async fn extend(
        &self,
        request: Request<pb::ExtendRequest>,
    ) -> Result<Response<pb::ExtendResponse>, Status> {
        if ids::is_joined(&request.get_ref().reservation_id) {
            return cross_shard::extend(self, request).await;
        }
        let r = request.get_ref();
        let (request_id, shard, reservation) =
            self.reservation_target(&r.request_id, &r.reservation_id)?;
        let command = Command {
            request_id,
            kind: CommandKind::Extend(engine::Extend {
                reservation,
                ttl_ms: r.ttl_ms,
            }),
        };
        let wire_id = r.reservation_id.clone();
        let executed = self
            .execute(&request, shard, command, |mut c, req| async move {
                c.extend(req).await
            })
            .await?;
        self.respond(executed, &[], |success, _| match success {
            Success::Extended { expires_at_ms, .. } => Some(pb::ExtendResponse {
                reservation_id: wire_id,
                expires_at_ms,
            }),
            _ => None,
        })
    }

    async fn adjust_stock(
        &self,
        request: Request<pb::AdjustStockRequest>,
    ) -> Result<Response<pb::AdjustStockResponse>, Status> {
        let r = request.get_ref();
        let request_id = ids::request_id(&r.request_id).map_err(bad_id)?;
        let shard = shard_of(&r.sku, self.node.shards);
        let command = Command {
            request_id,
            kind: CommandKind::AdjustStock(engine::AdjustStock {
                sku: r.sku.clone(),
                location: r.location.clone(),
                delta: r.delta,
                expected_on_hand: r.expected_on_hand,
            }),
        };
        let executed = self
            .execute(&request, shard, command, |mut c, req| async move {
                c.adjust_stock(req).await
            })
            .await?;
        self.respond(executed, &[], |success, _| match success {
            Success::Adjusted {
                on_hand, available, ..
            } => Some(pb::AdjustStockResponse { on_hand, available }),
            _ => None,
        })
    }

    async fn upsert_location(
        &self,
        request: Request<pb::UpsertLocationRequest>,
    ) -> Result<Response<pb::UpsertLocationResponse>, Status> {
        // Every shard needs the location: one command per shard, each under
        // its own derived request id, all of which must succeed.
        let r = request.get_ref().clone();
        let base = ids::request_id(&r.request_id).map_err(bad_id)?;
        let only: Option<u32> = request
            .metadata()
            .get(ONLY_SHARD)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        let shards: Vec<u32> = match only {
            Some(s) if s < self.node.shards => vec![s],
            Some(_) => {
                return Err(status::invalid(
                    ONLY_SHARD,
                    "names no shard of this cluster",
                ))
            }
            None => (0..self.node.shards).collect(),
        };
        let mut created = false;
        for shard in shards {
            let command = Command {
                request_id: ids::request_id_for_shard(base, shard),
                kind: CommandKind::UpsertLocation(engine::UpsertLocation {
                    location: r.location.clone(),
                    region: r.region.clone(),
                    priority: r.priority,
                }),
            };
            let mut per_shard = Request::new(r.clone());
            if request.metadata().contains_key(FORWARDED) {
                per_shard
                    .metadata_mut()
                    .insert(FORWARDED, MetadataValue::from_static("1"));
            }
            per_shard
                .metadata_mut()
                .insert(ONLY_SHARD, MetadataValue::from(shard));
            match self
                .execute(&per_shard, shard, command, |mut c, req| async move {
                    c.upsert_location(req).await
                })
                .await?
            {
                // The leader of this shard applied this shard's part.
                Executed::Forwarded(resp) => created |= resp.get_ref().created,
                Executed::Local(Ok(Success::LocationUpserted { created: c, .. }), _) => {
                    created |= c
                }
                Executed::Local(Err(refusal), detail) => {
                    return Err(self.refusal_status(&refusal, &detail, &[]))
                }
                Executed::Local(other, _) => return Err(unexpected(&other)),
            }
        }
        Ok(Response::new(pb::UpsertLocationResponse { created }))
    }

    async fn set_policy(
        &self,
        request: Request<pb::SetPolicyRequest>,
    ) -> Result<Response<pb::SetPolicyResponse>, Status> {
        let r = request.get_ref();
        let request_id = ids::request_id(&r.request_id).map_err(bad_id)?;
        let shard = shard_of(&r.sku, self.node.shards);
        let customer_limit = match (&r.customer_limit, r.clear_customer_limit) {
            (Some(_), true) => {
                return Err(status::invalid(
                    "clear_customer_limit",
                    "cannot be set together with customer_limit",
                ))
            }
            (Some(l), false) => engine::LimitChange::Set(engine::CustomerLimit {
                max_units: l.max_units,
                campaign: l.campaign,
            }),
            (None, true) => engine::LimitChange::Clear,
            (None, false) => engine::LimitChange::Keep,
        };
        let command = Command {
            request_id,
            kind: CommandKind::SetPolicy(engine::SetPolicy {
                sku: r.sku.clone(),
                location: r.location.clone(),
                safety_stock: r.safety_stock,
                backorder_allowance: r.backorder_allowance,
                customer_limit,
            }),
        };
        let executed = self
            .execute(&request, shard, command, |mut c, req| async move {
                c.set_policy(req).await
            })
            .await?;
        self.respond(executed, &[], |success, _| match success {
            Success::PolicySet { .. } => Some(pb::SetPolicyResponse {}),
            _ => None,
        })
    }

    async fn get_reservation(
        &self,
        request: Request<pb::GetReservationRequest>,
    ) -> Result<Response<pb::GetReservationResponse>, Status> {
        if ids::is_joined(&request.get_ref().reservation_id) {
            return cross_shard::get(self, request).await;
        }
        let r = request.get_ref();
        let (shard, id) =
            ids::reservation_from_wire(&r.reservation_id, self.node.shards).map_err(bad_id)?;
        let linearizable = !matches!(
            pb::Consistency::try_from(r.consistency),
            Ok(pb::Consistency::Stale)
        );
        let (tx, rx) = oneshot::channel();
        self.node
            .submit(Inbound::Read {
                shard,
                query: ReadQuery::Reservation(id),
                linearizable,
                reply: tx,
            })
            .map_err(|_| Status::unavailable("node overloaded or stopping"))?;
        match rx.await.map_err(|_| Status::unavailable("node stopped"))? {
            ReadResult::Reservation {
                reservation: Some(found),
                index,
            } => Ok(Response::new(reservation_to_pb(
                &r.reservation_id,
                found,
                index,
            ))),
            ReadResult::Reservation {
                reservation: None,
                index,
            } => Err(status::status(
                Code::NotFound,
                format!(
                    "reservation_id: no reservation {} (as of log index {index})",
                    r.reservation_id
                ),
                "RESERVATION_NOT_FOUND",
                &[
                    ("reservation_id", r.reservation_id.clone()),
                    ("as_of_index", index.to_string()),
                ],
            )),
            ReadResult::NotLeader { leader } => {
                let forwarded = request.metadata().contains_key(FORWARDED);
                match leader.filter(|&l| l != self.node.id && !forwarded) {
                    Some(leader) => {
                        self.forward(leader, shard, &request, |mut c, req| async move {
                            c.get_reservation(req).await
                        })
                        .await
                    }
                    None => Err(status::unavailable(shard, None)),
                }
            }
            ReadResult::Rows { .. } | ReadResult::Reservations { .. } => Err(Status::internal(
                "a reservation read answered with something else",
            )),
            ReadResult::TimedOut => Err(Status::deadline_exceeded(format!(
                "shard {shard}: the read index did not arrive in time; retry"
            ))),
        }
    }

    async fn get_availability(
        &self,
        request: Request<pb::GetAvailabilityRequest>,
    ) -> Result<Response<pb::GetAvailabilityResponse>, Status> {
        let r = request.get_ref();
        if r.rows.is_empty() || r.rows.len() > AVAILABILITY_ROWS_MAX {
            return Err(status::invalid("rows", "must hold 1 to 1000 rows"));
        }
        let linearizable = !matches!(
            pb::Consistency::try_from(r.consistency),
            Ok(pb::Consistency::Stale)
        );
        let mut by_shard: BTreeMap<u32, Vec<(String, Option<String>)>> = BTreeMap::new();
        for (i, row) in r.rows.iter().enumerate() {
            if row.sku.is_empty() || row.sku.len() > engine::limits::SKU_BYTES_MAX {
                return Err(status::invalid(
                    &format!("rows[{i}].sku"),
                    "must be 1 to 256 bytes",
                ));
            }
            by_shard
                .entry(shard_of(&row.sku, self.node.shards))
                .or_default()
                .push((row.sku.clone(), row.location.clone()));
        }
        let forwarded = request.metadata().contains_key(FORWARDED);
        let mut out = Vec::new();
        for (shard, keys) in by_shard {
            match self
                .read(shard, ReadQuery::Rows(keys.clone()), linearizable)
                .await?
            {
                ReadResult::Rows { rows, index } => {
                    out.extend(rows.into_iter().map(|row| pb::RowAvailability {
                        sku: row.sku,
                        location: row.location,
                        on_hand: row.availability.on_hand,
                        held: row.availability.held,
                        available: row.availability.available,
                        as_of_index: index,
                    }))
                }
                ReadResult::NotLeader { leader } => {
                    let leader = leader.filter(|&l| l != self.node.id && !forwarded);
                    let Some(leader) = leader else {
                        return Err(status::unavailable(shard, None));
                    };
                    let sub = pb::GetAvailabilityRequest {
                        rows: keys
                            .into_iter()
                            .map(|(sku, location)| pb::RowKey { sku, location })
                            .collect(),
                        consistency: r.consistency,
                    };
                    let resp = self
                        .forward(leader, shard, &Request::new(sub), |mut c, req| async move {
                            c.get_availability(req).await
                        })
                        .await?;
                    out.extend(resp.into_inner().rows);
                }
                _ => return Err(Status::internal("a row read answered with something else")),
            }
        }
        Ok(Response::new(pb::GetAvailabilityResponse { rows: out }))
    }

    type WatchEventsStream = ReceiverStream<Result<pb::Event, Status>>;

    async fn watch_events(
        &self,
        request: Request<pb::WatchEventsRequest>,
    ) -> Result<Response<Self::WatchEventsStream>, Status> {
        let plan = WatchPlan::from_request(request.get_ref(), self.node.shards)?;
        Ok(Response::new(ReceiverStream::new(
            self.node.events.stream(plan),
        )))
    }

    async fn list_reservations(
        &self,
        request: Request<pb::ListReservationsRequest>,
    ) -> Result<Response<pb::ListReservationsResponse>, Status> {
        let r = request.get_ref();
        let plan = ListPlan::from_request(r, self.node.shards)?;
        let linearizable = !matches!(
            pb::Consistency::try_from(r.consistency),
            Ok(pb::Consistency::Stale)
        );
        let forwarded = request.metadata().contains_key(FORWARDED);
        let (mut shard, mut slot) = (plan.shard, plan.slot);
        let mut out = Vec::new();
        for _ in 0..LIST_STEPS_PER_CALL {
            if shard >= self.node.shards || out.len() >= plan.page_size {
                break;
            }
            let query = ReadQuery::Reservations(plan.query(slot, plan.page_size - out.len()));
            match self.read(shard, query, linearizable).await? {
                ReadResult::Reservations {
                    found,
                    next_slot,
                    index,
                } => {
                    out.extend(found.into_iter().map(|found| {
                        let wire = ids::reservation_to_wire(shard, found.id);
                        reservation_to_pb(&wire, found, index)
                    }));
                    match next_slot {
                        Some(next) => slot = next,
                        None => (shard, slot) = (shard + 1, 0),
                    }
                }
                ReadResult::NotLeader { leader } => {
                    // A page never mixes shards led by different nodes: what
                    // was found so far is this page, the rest is the next.
                    if !out.is_empty() {
                        break;
                    }
                    let leader = leader.filter(|&l| l != self.node.id && !forwarded);
                    let Some(leader) = leader else {
                        return Err(status::unavailable(shard, None));
                    };
                    let mut sub = r.clone();
                    sub.page_token = plan.token(shard, slot);
                    return self
                        .forward(leader, shard, &Request::new(sub), |mut c, req| async move {
                            c.list_reservations(req).await
                        })
                        .await;
                }
                _ => {
                    return Err(Status::internal(
                        "a listing read answered with something else",
                    ))
                }
            }
        }
        let next_page_token = if shard < self.node.shards {
            plan.token(shard, slot)
        } else {
            String::new()
        };
        Ok(Response::new(pb::ListReservationsResponse {
            reservations: out,
            next_page_token,
        }))
    }
}
