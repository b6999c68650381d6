//! The coordinator of cross-shard reservations (design §4).
//!
//! Unit of work: one *cross-shard call*, that is a `Reserve` whose lines
//! fall in several shards, or a `Confirm`, `Release`, `Extend` or
//! `GetReservation` of a joined id (`"2-17+5-40"`, see [`crate::ids`]). The
//! node that receives the call runs it on the RPC's own task: it splits the
//! call into one ordinary single-shard request per shard (a *part*), sends
//! them all at once through the service's usual path (proposed here when
//! this node leads the part's shard, else forwarded once to its leader),
//! and merges the answers. The coordinator is outside the state machine:
//! it only proposes ordinary commands, keeps no state between calls and
//! reads no clock, so nothing new is applied from the log (design §1.5).
//!
//! What makes it safe:
//! - **Each part is one atomic command** on its shard, checked there like
//!   any reserve: no part is half-applied, no unit oversold (§1.1).
//! - **Deterministic part ids.** Every part (and every compensating
//!   release) has a request id derived from the client's request id, the
//!   operation and the shards ([`ids::part_request_id`]). A retry of the
//!   call repeats every part under the same id, so each shard answers its
//!   first answer and the coordinator reaches the same decision (§1.3).
//! - **Answer only when every part is known.** A part whose outcome is
//!   unknown (no leader, a timeout, a lost proposal) makes the answer
//!   `ABORTED`: the client retries with the same request id, which finds
//!   out. A refusal is answered only after the held parts are released.
//! - **If the coordinator dies** (node crash, call cancelled), the held
//!   parts stay pending until a retry finishes the call or their TTL
//!   releases them, like any hold nobody confirms.
//!
//! Between the parts' decisions, a reader may see some parts and not
//! others; `docs/architecture.md` ("Cross-shard reservations") lists those
//! states.

use crate::ids::{self, PartOp};
use crate::pb::inventory as pb;
use crate::pb::inventory::inventory_server::Inventory;
use crate::service::{engine_reserve, InventoryService, FIRST_ATTEMPT_HEADER};
use crate::status;
use futures_util::future::join_all;
use holdfast_engine::{self as engine, shard_of, Command, CommandKind};
use std::collections::BTreeMap;
use tonic::{Code, Request, Response, Status};
use tonic_types::StatusExt;

/// One part of a cross-shard Reserve: the request's lines on one shard.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PlannedPart {
    /// The shard.
    shard: u32,
    /// Indexes of the request's lines that fall in it, ascending: part line
    /// `k` is request line `lines[k]`.
    lines: Vec<usize>,
}

/// Groups the request's lines by shard, in shard order; refuses more than
/// [`ids::RESERVATION_PARTS_MAX`] shards.
fn plan(r: &pb::ReserveRequest, shards: u32) -> Result<Vec<PlannedPart>, Status> {
    let mut by_shard: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
    for (i, line) in r.lines.iter().enumerate() {
        by_shard
            .entry(shard_of(&line.sku, shards))
            .or_default()
            .push(i);
    }
    if by_shard.len() > ids::RESERVATION_PARTS_MAX {
        return Err(status::invalid(
            "lines",
            &format!(
                "fall in {} shards; one reservation may span at most {}",
                by_shard.len(),
                ids::RESERVATION_PARTS_MAX
            ),
        ));
    }
    Ok(by_shard
        .into_iter()
        .map(|(shard, lines)| PlannedPart { shard, lines })
        .collect())
}

/// The ordinary single-shard Reserve that holds `part`: the request with
/// only the part's lines, under the part's own request id.
fn part_request(r: &pb::ReserveRequest, part: &PlannedPart, shards: &[u32]) -> pb::ReserveRequest {
    pb::ReserveRequest {
        request_id: ids::part_request_id(&r.request_id, PartOp::Reserve, part.shard, shards),
        lines: part.lines.iter().map(|&i| r.lines[i].clone()).collect(),
        ..r.clone()
    }
}

/// How a part answered, as far as the coordinator's decision goes.
enum Answer<T> {
    /// Applied: its reply.
    Done(T),
    /// A decision of the part's ledger or a bad field: final.
    Refused(Status),
    /// The part's request id was used before with another body.
    Mismatch(Status),
    /// Unknown outcome: the part may or may not apply.
    Unknown(Status),
}

fn classify<T>(result: Result<Response<T>, Status>) -> Answer<T> {
    match result {
        Ok(reply) => Answer::Done(reply.into_inner()),
        Err(s) => match s.code() {
            Code::AlreadyExists => Answer::Mismatch(s),
            Code::FailedPrecondition | Code::NotFound | Code::InvalidArgument => Answer::Refused(s),
            _ => Answer::Unknown(s),
        },
    }
}

impl<T> Answer<T> {
    /// What the decision of a Reserve needs to know of this answer.
    fn kind(&self) -> Kind {
        match self {
            Answer::Done(_) => Kind::Held,
            Answer::Refused(s) if reason(s) == "OUT_OF_STOCK" => Kind::OutOfStock,
            Answer::Refused(_) => Kind::Refused,
            Answer::Mismatch(_) => Kind::Mismatch,
            Answer::Unknown(_) => Kind::Unknown,
        }
    }

    fn status(&self) -> Option<&Status> {
        match self {
            Answer::Done(_) => None,
            Answer::Refused(s) | Answer::Mismatch(s) | Answer::Unknown(s) => Some(s),
        }
    }
}

/// A part's answer to a Reserve, reduced to what the decision needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Held,
    OutOfStock,
    Refused,
    Mismatch,
    Unknown,
}

/// What the coordinator of a Reserve does once every part answered. Parts
/// are named by their index in shard order.
#[derive(Debug, PartialEq, Eq)]
enum Decision {
    /// Answer the reservation these held parts make.
    Join(Vec<usize>),
    /// Release the held parts, then answer this part's refusal.
    Refuse { part: usize, release: Vec<usize> },
    /// Answer this part's `ALREADY_EXISTS`, touching nothing: the held
    /// parts may be the first request's.
    Mismatch(usize),
    /// This part's outcome is unknown: release `release` (parts a refusal
    /// already dooms), then answer `ABORTED` so the client retries.
    Unknown { part: usize, release: Vec<usize> },
}

/// The decision, a pure function of the parts' answers, so a retry that
/// gets the same answers (design §1.3) decides the same.
///
/// `ALL_OR_NOTHING`: any refused part refuses the reservation. `PARTIAL`
/// across shards is what it is on one shard, a part standing for a line: a
/// part that can hold nothing (`OUT_OF_STOCK`) is left out, and the call is
/// refused only when no part holds anything. Other refusals (a customer
/// limit, an unknown location) refuse the call under either policy.
fn decide(kinds: &[Kind], policy: engine::FillPolicy) -> Decision {
    let first = |want: &dyn Fn(Kind) -> bool| kinds.iter().position(|&k| want(k));
    let held: Vec<usize> = (0..kinds.len())
        .filter(|&i| kinds[i] == Kind::Held)
        .collect();
    let refusal = match policy {
        engine::FillPolicy::AllOrNothing => {
            first(&|k| matches!(k, Kind::OutOfStock | Kind::Refused))
        }
        engine::FillPolicy::Partial => first(&|k| k == Kind::Refused).or_else(|| {
            let nothing_held = held.is_empty() && first(&|k| k == Kind::Unknown).is_none();
            first(&|k| k == Kind::OutOfStock).filter(|_| nothing_held)
        }),
    };
    let mismatch = first(&|k| k == Kind::Mismatch);
    if let Some(part) = first(&|k| k == Kind::Unknown) {
        let doomed = refusal.is_some() && mismatch.is_none();
        return Decision::Unknown {
            part,
            release: if doomed { held } else { Vec::new() },
        };
    }
    match (mismatch, refusal) {
        (Some(part), _) => Decision::Mismatch(part),
        (None, Some(part)) => Decision::Refuse {
            part,
            release: held,
        },
        (None, None) => Decision::Join(held),
    }
}

/// Serves a Reserve whose lines fall in several shards (`policy` already
/// parsed, the request id already checked by the caller).
pub async fn reserve(
    svc: &InventoryService,
    request: Request<pb::ReserveRequest>,
    policy: engine::FillPolicy,
) -> Result<Response<pb::ReserveResponse>, Status> {
    let r = request.get_ref();
    // The whole request within the engine's bounds (100 lines in all, …),
    // with line numbers as the client sent them.
    let whole = Command {
        request_id: engine::RequestId(0),
        kind: CommandKind::Reserve(engine_reserve(r, policy)),
    };
    whole.validate().map_err(|e| status::invalid_argument(&e))?;
    let parts = plan(r, svc.shards())?;
    let shards: Vec<u32> = parts.iter().map(|p| p.shard).collect();
    let requests: Vec<pb::ReserveRequest> =
        parts.iter().map(|p| part_request(r, p, &shards)).collect();
    if request.metadata().contains_key(FIRST_ATTEMPT_HEADER) {
        if let Some(refusal) = sold_out(svc, &parts, &requests, policy) {
            svc.count_sold_out_refusal();
            return Err(refusal);
        }
    }
    let answers: Vec<Answer<pb::ReserveResponse>> =
        join_all(requests.into_iter().map(|q| svc.reserve(Request::new(q))))
            .await
            .into_iter()
            .map(classify)
            .collect();
    let kinds: Vec<Kind> = answers.iter().map(Answer::kind).collect();
    let held = |indexes: &[usize]| held_parts(svc.shards(), &parts, &answers, indexes);
    match decide(&kinds, policy) {
        Decision::Join(indexes) => joined_reply(&held(&indexes)?).map(Response::new),
        Decision::Mismatch(i) => Err(renumbered(&answers[i], &parts[i])),
        Decision::Refuse { part, release } => {
            compensate(svc, &r.request_id, &shards, &held(&release)?).await?;
            Err(renumbered(&answers[part], &parts[part]))
        }
        Decision::Unknown { part, release } => {
            compensate(svc, &r.request_id, &shards, &held(&release)?).await?;
            Err(unknown_part(parts[part].shard, answers[part].status()))
        }
    }
}

/// The sold-out pre-filter (design §5) over every part before any is
/// sent: `ALL_OR_NOTHING` is refused when one part is sold out, `PARTIAL`
/// when every part is. Nothing is proposed, so a retry starts afresh.
fn sold_out(
    svc: &InventoryService,
    parts: &[PlannedPart],
    requests: &[pb::ReserveRequest],
    policy: engine::FillPolicy,
) -> Option<Status> {
    let mut refusals = parts
        .iter()
        .zip(requests)
        .filter_map(|(p, q)| Some(renumber(&svc.sold_out(p.shard, q, policy)?, p)));
    match policy {
        engine::FillPolicy::AllOrNothing => refusals.next(),
        engine::FillPolicy::Partial => {
            let all: Vec<Status> = refusals.collect();
            if all.len() < parts.len() {
                return None;
            }
            all.into_iter().next()
        }
    }
}

/// A held part: its shard, its own id, its reply.
struct Held<'a> {
    shard: u32,
    id: engine::ReservationId,
    reply: &'a pb::ReserveResponse,
}

/// The held parts at `indexes`, with the ids their shards gave them.
fn held_parts<'a>(
    shards: u32,
    parts: &[PlannedPart],
    answers: &'a [Answer<pb::ReserveResponse>],
    indexes: &[usize],
) -> Result<Vec<Held<'a>>, Status> {
    indexes
        .iter()
        .map(|&i| {
            let Answer::Done(reply) = &answers[i] else {
                return Err(Status::internal("a part to join was not held"));
            };
            match ids::reservation_from_wire(&reply.reservation_id, shards) {
                Ok((shard, id)) if shard == parts[i].shard => Ok(Held { shard, id, reply }),
                _ => Err(Status::internal(format!(
                    "shard {} answered reservation id {:?}",
                    parts[i].shard, reply.reservation_id
                ))),
            }
        })
        .collect()
}

/// The answer of a cross-shard Reserve: the parts' ids joined in shard
/// order, their allocations part by part (the order Confirm's quantities
/// follow, recoverable from the id alone), the earliest expiry.
fn joined_reply(held: &[Held<'_>]) -> Result<pb::ReserveResponse, Status> {
    let ids: Vec<(u32, engine::ReservationId)> = held.iter().map(|h| (h.shard, h.id)).collect();
    let expires_at_ms = held.iter().map(|h| h.reply.expires_at_ms).min();
    Ok(pb::ReserveResponse {
        reservation_id: ids::joined_to_wire(&ids),
        allocations: held
            .iter()
            .flat_map(|h| h.reply.allocations.iter().cloned())
            .collect(),
        expires_at_ms: expires_at_ms.ok_or_else(|| Status::internal("no part was held"))?,
    })
}

/// Releases `held` parts because the reservation is refused, each under
/// its derived request id (a retry repeats the same releases). A part that
/// is no longer pending holds nothing, which is all that is wanted.
async fn compensate(
    svc: &InventoryService,
    request_id: &str,
    shards: &[u32],
    held: &[Held<'_>],
) -> Result<(), Status> {
    let releases = held.iter().map(|h| {
        svc.release(Request::new(pb::ReleaseRequest {
            request_id: ids::part_request_id(request_id, PartOp::Compensate, h.shard, shards),
            reservation_id: h.reply.reservation_id.clone(),
        }))
    });
    for (h, result) in held.iter().zip(join_all(releases).await) {
        match classify(result) {
            Answer::Done(_) | Answer::Refused(_) => {}
            Answer::Mismatch(s) => tracing::warn!(
                part = %h.reply.reservation_id,
                status = %s.message(),
                "a compensating release was refused as a reused request id; the part lapses with its TTL"
            ),
            Answer::Unknown(s) => return Err(unknown_part(h.shard, Some(&s))),
        }
    }
    Ok(())
}

/// `ABORTED` for a call whose part on `shard` has no known outcome: the
/// client retries the whole call with the same request id (it never
/// follows the part's leader hint, which names another shard's leader).
fn unknown_part(shard: u32, s: Option<&Status>) -> Status {
    let why = s.map_or_else(String::new, |s| {
        format!(" ({}: {})", status_code_name(s.code()), s.message())
    });
    status::aborted(
        shard,
        &format!("the part of this cross-shard call on this shard has no known outcome{why}"),
    )
}

fn status_code_name(code: Code) -> String {
    format!("{code:?}")
}

fn reason(s: &Status) -> String {
    s.get_details_error_info()
        .map(|i| i.reason)
        .unwrap_or_default()
}

/// `s` rebuilt with `message`, and its `ErrorInfo` metadata passed through
/// `edit` (statuses without one keep none).
fn rebuild(
    s: &Status,
    message: String,
    edit: impl FnOnce(&mut BTreeMap<String, String>),
) -> Status {
    let Some(info) = s.get_details_error_info() else {
        return Status::new(s.code(), message);
    };
    let mut metadata: BTreeMap<String, String> = info.metadata.into_iter().collect();
    edit(&mut metadata);
    let pairs: Vec<(&str, String)> = metadata
        .iter()
        .map(|(k, v)| (k.as_str(), v.clone()))
        .collect();
    status::status(s.code(), message, &info.reason, &pairs)
}

/// Rewrites every `lines[k]` in `text` to `lines[map(k)]`.
fn renumber_text(text: &str, map: &dyn Fn(usize) -> Option<usize>) -> String {
    const OPEN: &str = "lines[";
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(OPEN) {
        let (before, after) = rest.split_at(at + OPEN.len());
        out.push_str(before);
        let digits = after.bytes().take_while(u8::is_ascii_digit).count();
        let mapped = after[..digits].parse().ok().and_then(map);
        match mapped.filter(|_| after[digits..].starts_with(']')) {
            Some(global) => out.push_str(&global.to_string()),
            None => out.push_str(&after[..digits]),
        }
        rest = &after[digits..];
    }
    out.push_str(rest);
    out
}

/// A part's refusal of a Reserve as the client must see it: line numbers
/// of the whole request (in the message, `line` and `field`), and the
/// part's shard as `part_shard`.
fn renumber(s: &Status, part: &PlannedPart) -> Status {
    let map = |k: usize| part.lines.get(k).copied();
    rebuild(s, renumber_text(s.message(), &map), |metadata| {
        if let Some(line) = metadata.get_mut("line") {
            if let Some(global) = line.parse().ok().and_then(map) {
                *line = global.to_string();
            }
        }
        if let Some(field) = metadata.get_mut("field") {
            *field = renumber_text(field, &map);
        }
        metadata.insert("part_shard".into(), part.shard.to_string());
    })
}

fn renumbered<T>(answer: &Answer<T>, part: &PlannedPart) -> Status {
    match answer.status() {
        Some(s) => renumber(s, part),
        None => Status::internal("a held part was to be answered as a refusal"),
    }
}

/// A parsed joined id and the call's view of its parts.
struct Joined {
    wire: String,
    parts: Vec<(u32, engine::ReservationId)>,
    shards: Vec<u32>,
}

impl Joined {
    /// The joined id of a mutating call, its request id checked too.
    fn of_call(svc: &InventoryService, wire: &str, request_id: &str) -> Result<Joined, Status> {
        let joined = Joined::parse(wire, svc.shards())?;
        ids::request_id(request_id).map_err(|e| status::invalid(e.field, e.why))?;
        Ok(joined)
    }

    fn parse(wire: &str, shards: u32) -> Result<Joined, Status> {
        let parts =
            ids::joined_from_wire(wire, shards).map_err(|e| status::invalid(e.field, e.why))?;
        Ok(Joined {
            wire: wire.to_string(),
            shards: parts.iter().map(|&(s, _)| s).collect(),
            parts,
        })
    }

    /// The id of part `i`.
    fn part(&self, i: usize) -> String {
        let (shard, id) = self.parts[i];
        ids::reservation_to_wire(shard, id)
    }

    /// The request id of part `i` of a call with client request id `base`.
    fn request_id(&self, base: &str, op: PartOp, i: usize) -> String {
        ids::part_request_id(base, op, self.parts[i].0, &self.shards)
    }

    /// Runs `call(i)` for every part `i` at once; every reply, or the one
    /// status that answers the call ([`Joined::all_done`]).
    async fn each_part<T, F, Fut>(&self, call: F, acted: bool) -> Result<Vec<T>, Status>
    where
        F: Fn(usize) -> Fut,
        Fut: std::future::Future<Output = Result<Response<T>, Status>>,
    {
        let answers = join_all((0..self.parts.len()).map(call)).await;
        self.all_done(answers.into_iter().map(classify).collect(), acted)
    }

    /// Every part's reply, or the one status that answers the call: an
    /// unknown part's `ABORTED` first (a retry learns the rest), else the
    /// first refusal in part order, naming the part and the parts that did
    /// act (`acted`, for calls that change state).
    fn all_done<T>(&self, answers: Vec<Answer<T>>, acted: bool) -> Result<Vec<T>, Status> {
        if let Some(i) = answers.iter().position(|a| matches!(a, Answer::Unknown(_))) {
            return Err(unknown_part(self.parts[i].0, answers[i].status()));
        }
        let done: Vec<String> = (0..answers.len())
            .filter(|&i| matches!(answers[i], Answer::Done(_)))
            .map(|i| self.part(i))
            .collect();
        let refusal = answers
            .iter()
            .enumerate()
            .find_map(|(i, a)| a.status().map(|s| (i, s)));
        if let Some((i, s)) = refusal {
            let note = match (acted, done.is_empty()) {
                (true, false) => format!("; parts {} did act", done.join(", ")),
                (true, true) => "; no part acted".into(),
                (false, _) => String::new(),
            };
            let message = format!(
                "part {} of {}: {}{note}",
                self.part(i),
                self.wire,
                s.message()
            );
            return Err(rebuild(s, message, |metadata| {
                metadata.insert("part".into(), self.part(i));
                metadata.insert("reservation_id".into(), self.wire.clone());
            }));
        }
        Ok(answers
            .into_iter()
            .filter_map(|a| match a {
                Answer::Done(reply) => Some(reply),
                _ => None,
            })
            .collect())
    }
}

/// Reads every part of `joined` (in parallel, each through the ordinary
/// GetReservation path).
async fn read_parts(
    svc: &InventoryService,
    joined: &Joined,
    consistency: i32,
) -> Result<Vec<pb::GetReservationResponse>, Status> {
    let read = |i| {
        svc.get_reservation(Request::new(pb::GetReservationRequest {
            reservation_id: joined.part(i),
            consistency,
        }))
    };
    joined.each_part(read, false).await
}

/// Splits a Confirm's quantities (one per allocation of the whole
/// reservation, part after part) into each part's, `None` meaning "all".
/// The split needs each part's allocation count, fixed when the part was
/// held, so it reads the parts first.
async fn split_quantities(
    svc: &InventoryService,
    joined: &Joined,
    quantities: &[i64],
) -> Result<Vec<Option<Vec<i64>>>, Status> {
    if quantities.is_empty() {
        return Ok(vec![None; joined.parts.len()]);
    }
    // The engine's checks of the whole list (bounds, not all zero), with
    // indexes as the client sent them.
    let whole = Command {
        request_id: engine::RequestId(0),
        kind: CommandKind::Confirm(engine::Confirm {
            reservation: engine::ReservationId(0),
            quantities: Some(quantities.to_vec()),
        }),
    };
    whole.validate().map_err(|e| status::invalid_argument(&e))?;
    let views = read_parts(svc, joined, pb::Consistency::Linearizable as i32).await?;
    let held: Vec<i64> = views
        .iter()
        .flat_map(|v| v.lines.iter().map(|l| l.quantity))
        .collect();
    if held.len() != quantities.len() {
        return Err(status::invalid(
            "quantities",
            &format!(
                "must have one entry per reservation allocation ({}), not {}",
                held.len(),
                quantities.len()
            ),
        ));
    }
    if let Some(i) = (0..held.len()).find(|&i| quantities[i] > held[i]) {
        return Err(status::invalid_argument(&engine::InvalidArgument {
            field: "quantities",
            line: Some(i as u16),
            why: "exceeds the units held on that allocation",
        }));
    }
    let mut rest = quantities;
    Ok(views
        .iter()
        .map(|v| {
            let (mine, after) = rest.split_at(v.lines.len());
            rest = after;
            Some(mine.to_vec())
        })
        .collect())
}

/// Confirms every part of a joined reservation. A part whose quantities
/// are all 0 is released instead (the engine refuses a confirm of nothing,
/// and releasing is what confirming 0 units means).
pub async fn confirm(
    svc: &InventoryService,
    request: Request<pb::ConfirmRequest>,
) -> Result<Response<pb::ConfirmResponse>, Status> {
    let r = request.get_ref();
    let joined = Joined::of_call(svc, &r.reservation_id, &r.request_id)?;
    let split = split_quantities(svc, &joined, &r.quantities).await?;
    let confirm_part = |i: usize| {
        let request_id = joined.request_id(&r.request_id, PartOp::Confirm, i);
        let reservation_id = joined.part(i);
        let quantities = split[i].clone();
        async move {
            match quantities {
                Some(q) if q.iter().all(|&units| units == 0) => svc
                    .release(Request::new(pb::ReleaseRequest {
                        request_id,
                        reservation_id,
                    }))
                    .await
                    .map(|reply| {
                        reply.map(|released| pb::ConfirmResponse {
                            reservation_id: released.reservation_id,
                            units_confirmed: 0,
                            units_released: released.units_released,
                        })
                    }),
                q => {
                    svc.confirm(Request::new(pb::ConfirmRequest {
                        request_id,
                        reservation_id,
                        quantities: q.unwrap_or_default(),
                    }))
                    .await
                }
            }
        }
    };
    let done = joined.each_part(confirm_part, true).await?;
    Ok(Response::new(pb::ConfirmResponse {
        reservation_id: joined.wire,
        units_confirmed: done.iter().map(|c| c.units_confirmed).sum(),
        units_released: done.iter().map(|c| c.units_released).sum(),
    }))
}

/// Releases every part of a joined reservation.
pub async fn release(
    svc: &InventoryService,
    request: Request<pb::ReleaseRequest>,
) -> Result<Response<pb::ReleaseResponse>, Status> {
    let r = request.get_ref();
    let joined = Joined::of_call(svc, &r.reservation_id, &r.request_id)?;
    let release_part = |i| {
        svc.release(Request::new(pb::ReleaseRequest {
            request_id: joined.request_id(&r.request_id, PartOp::Release, i),
            reservation_id: joined.part(i),
        }))
    };
    let done = joined.each_part(release_part, true).await?;
    Ok(Response::new(pb::ReleaseResponse {
        reservation_id: joined.wire,
        units_released: done.iter().map(|r| r.units_released).sum(),
    }))
}

/// Extends every part of a joined reservation; answers the earliest new
/// expiry (each part's is stamped by its own shard's leader).
pub async fn extend(
    svc: &InventoryService,
    request: Request<pb::ExtendRequest>,
) -> Result<Response<pb::ExtendResponse>, Status> {
    let r = request.get_ref();
    let joined = Joined::of_call(svc, &r.reservation_id, &r.request_id)?;
    let extend_part = |i| {
        svc.extend(Request::new(pb::ExtendRequest {
            request_id: joined.request_id(&r.request_id, PartOp::Extend, i),
            reservation_id: joined.part(i),
            ttl_ms: r.ttl_ms,
        }))
    };
    let done = joined.each_part(extend_part, true).await?;
    Ok(Response::new(pb::ExtendResponse {
        reservation_id: joined.wire,
        expires_at_ms: done.iter().map(|e| e.expires_at_ms).min().unwrap_or(0),
    }))
}

/// Reads every part of a joined reservation and answers them merged, with
/// each part in `parts`.
pub async fn get(
    svc: &InventoryService,
    request: Request<pb::GetReservationRequest>,
) -> Result<Response<pb::GetReservationResponse>, Status> {
    let r = request.get_ref();
    let joined = Joined::parse(&r.reservation_id, svc.shards())?;
    let views = read_parts(svc, &joined, r.consistency).await?;
    Ok(Response::new(merge_views(joined.wire, views)))
}

/// One view of a cross-shard reservation from its parts' views (in part
/// order): the parts' state if they share one, else `MIXED`; lines part
/// after part; the earliest times.
fn merge_views(wire: String, views: Vec<pb::GetReservationResponse>) -> pb::GetReservationResponse {
    let state = match views.first() {
        Some(first) if views.iter().all(|v| v.state == first.state) => first.state,
        _ => pb::ReservationState::Mixed as i32,
    };
    let (owner_id, customer_id) = views
        .first()
        .map(|v| (v.owner_id.clone(), v.customer_id.clone()))
        .unwrap_or_default();
    pb::GetReservationResponse {
        reservation_id: wire,
        state,
        owner_id,
        customer_id,
        created_at_ms: views.iter().map(|v| v.created_at_ms).min().unwrap_or(0),
        expires_at_ms: views.iter().map(|v| v.expires_at_ms).min().unwrap_or(0),
        as_of_index: 0,
        parts: views
            .iter()
            .map(|v| pb::ReservationPart {
                reservation_id: v.reservation_id.clone(),
                state: v.state,
                lines: v.lines.len() as u32,
                expires_at_ms: v.expires_at_ms,
                as_of_index: v.as_of_index,
            })
            .collect(),
        lines: views.into_iter().flat_map(|v| v.lines).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use engine::FillPolicy::{AllOrNothing, Partial};
    use Kind::*;

    fn refusal(reason: &str, line: usize) -> Status {
        status::status(
            Code::FailedPrecondition,
            format!("lines[{line}]: 3 of SKU-B requested, 1 available at berlin"),
            reason,
            &[("line", line.to_string()), ("sku", "SKU-B".into())],
        )
    }

    /// Design §4: one refused part refuses the reservation and releases the
    /// held ones; a reused request id touches nothing; an unknown part
    /// delays the answer.
    #[test]
    fn all_or_nothing_decisions() {
        assert_eq!(
            decide(&[Held, Held], AllOrNothing),
            Decision::Join(vec![0, 1])
        );
        assert_eq!(
            decide(&[Held, OutOfStock, Held], AllOrNothing),
            Decision::Refuse {
                part: 1,
                release: vec![0, 2]
            }
        );
        assert_eq!(
            decide(&[Refused, OutOfStock], AllOrNothing),
            Decision::Refuse {
                part: 0,
                release: vec![]
            }
        );
        assert_eq!(
            decide(&[Held, Mismatch, OutOfStock], AllOrNothing),
            Decision::Mismatch(1)
        );
        assert_eq!(
            decide(&[Held, Unknown], AllOrNothing),
            Decision::Unknown {
                part: 1,
                release: vec![]
            }
        );
        // A refusal already dooms the held parts: release them at once.
        assert_eq!(
            decide(&[Held, Unknown, OutOfStock], AllOrNothing),
            Decision::Unknown {
                part: 1,
                release: vec![0]
            }
        );
        // ... unless the request id is reused: those parts may be the
        // first request's.
        assert_eq!(
            decide(&[Held, Unknown, Mismatch], AllOrNothing),
            Decision::Unknown {
                part: 1,
                release: vec![]
            }
        );
    }

    /// PARTIAL across shards: a part that can hold nothing is left out; the
    /// call is refused only when no part holds anything, or for a refusal
    /// that is not about stock.
    #[test]
    fn partial_decisions() {
        assert_eq!(
            decide(&[Held, OutOfStock], Partial),
            Decision::Join(vec![0])
        );
        assert_eq!(
            decide(&[OutOfStock, OutOfStock], Partial),
            Decision::Refuse {
                part: 0,
                release: vec![]
            }
        );
        assert_eq!(
            decide(&[Held, Refused], Partial),
            Decision::Refuse {
                part: 1,
                release: vec![0]
            }
        );
        assert_eq!(
            decide(&[OutOfStock, Unknown], Partial),
            Decision::Unknown {
                part: 1,
                release: vec![]
            }
        );
    }

    #[test]
    fn decisions_never_join_nothing_nor_release_what_they_answer() {
        let kinds = [Held, OutOfStock, Refused, Mismatch, Unknown];
        for a in kinds {
            for b in kinds {
                for c in kinds {
                    for policy in [AllOrNothing, Partial] {
                        let answers = [a, b, c];
                        match decide(&answers, policy) {
                            Decision::Join(held) => {
                                assert!(!held.is_empty());
                                assert!(held.iter().all(|&i| answers[i] == Held));
                            }
                            Decision::Refuse { part, release }
                            | Decision::Unknown { part, release } => {
                                assert_ne!(answers[part], Held);
                                assert!(release.iter().all(|&i| answers[i] == Held));
                                if answers.contains(&Mismatch) {
                                    assert!(release.is_empty(), "{answers:?}");
                                }
                            }
                            Decision::Mismatch(part) => assert_eq!(answers[part], Mismatch),
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn lines_are_renumbered_as_the_client_sent_them() {
        let map = |k: usize| [1usize, 4, 7].get(k).copied();
        assert_eq!(
            renumber_text(
                "lines[0]: x; lines[2].location; lines[9]; lines[x]; lines[",
                &map
            ),
            "lines[1]: x; lines[7].location; lines[9]; lines[x]; lines["
        );
        let part = PlannedPart {
            shard: 5,
            lines: vec![1, 4],
        };
        let s = renumber(&refusal("OUT_OF_STOCK", 1), &part);
        assert_eq!(s.code(), Code::FailedPrecondition);
        assert!(s.message().starts_with("lines[4]: "), "{}", s.message());
        let info = s.get_details_error_info().expect("ErrorInfo");
        assert_eq!(info.reason, "OUT_OF_STOCK");
        assert_eq!(info.metadata["line"], "4");
        assert_eq!(info.metadata["sku"], "SKU-B");
        assert_eq!(info.metadata["part_shard"], "5");
        let invalid = renumber(&status::invalid("lines[1].location", "is too long"), &part);
        let info = invalid.get_details_error_info().expect("ErrorInfo");
        assert_eq!(info.metadata["field"], "lines[4].location");
        assert_eq!(invalid.code(), Code::InvalidArgument);
    }

    proptest::proptest! {
        /// Any message (multi-byte text, huge or broken `lines[` numbers)
        /// is rewritten without a panic; text without `lines[` is kept.
        #[test]
        fn renumbering_never_panics(text in "(lines\\[|[0-9]{1,25}|\\]|é|.){0,30}") {
            let map = |k: usize| k.checked_mul(3);
            let out = renumber_text(&text, &map);
            if !text.contains("lines[") {
                proptest::prop_assert_eq!(out, text);
            }
        }
    }

    #[test]
    fn lines_are_grouped_by_shard_in_shard_order() {
        let line = |sku: &str| pb::ReserveLine {
            sku: sku.into(),
            quantity: 1,
            location: None,
        };
        let skus: Vec<String> = (0..40).map(|i| format!("SKU-{i}")).collect();
        let r = pb::ReserveRequest {
            lines: skus.iter().map(|s| line(s)).collect(),
            ..Default::default()
        };
        let parts = plan(&r, 8).expect("8 shards");
        assert!(parts.windows(2).all(|w| w[0].shard < w[1].shard));
        let mut all: Vec<usize> = parts.iter().flat_map(|p| p.lines.clone()).collect();
        all.sort_unstable();
        assert_eq!(all, (0..40).collect::<Vec<_>>());
        for p in &parts {
            assert!(p.lines.iter().all(|&i| shard_of(&skus[i], 8) == p.shard));
        }
        let e = plan(&r, 64).expect_err("over 16 shards");
        assert_eq!(e.code(), Code::InvalidArgument);
        assert!(e.message().starts_with("lines "), "{}", e.message());
        let request = part_request(&r, &parts[0], &[parts[0].shard, parts[1].shard]);
        assert_eq!(request.lines.len(), parts[0].lines.len());
        assert!(request.request_id.starts_with("p-"));
    }

    fn view(
        id: &str,
        state: pb::ReservationState,
        lines: usize,
        expires: u64,
    ) -> pb::GetReservationResponse {
        pb::GetReservationResponse {
            reservation_id: id.into(),
            state: state as i32,
            owner_id: "cart".into(),
            customer_id: "cust".into(),
            lines: (0..lines)
                .map(|i| pb::ReservedLine {
                    sku: format!("{id}/{i}"),
                    ..Default::default()
                })
                .collect(),
            created_at_ms: expires - 1_000,
            expires_at_ms: expires,
            as_of_index: 9,
            parts: Vec::new(),
        }
    }

    #[test]
    fn views_merge_part_after_part() {
        use pb::ReservationState::*;
        let merged = merge_views(
            "2-1+5-7".into(),
            vec![
                view("2-1", Pending, 2, 5_000),
                view("5-7", Pending, 1, 4_000),
            ],
        );
        assert_eq!(merged.state, Pending as i32);
        assert_eq!(merged.expires_at_ms, 4_000);
        assert_eq!(merged.created_at_ms, 3_000);
        assert_eq!(merged.as_of_index, 0);
        let skus: Vec<&str> = merged.lines.iter().map(|l| l.sku.as_str()).collect();
        assert_eq!(skus, ["2-1/0", "2-1/1", "5-7/0"]);
        assert_eq!(merged.parts.len(), 2);
        assert_eq!((merged.parts[0].lines, merged.parts[1].lines), (2, 1));
        let mixed = merge_views(
            "2-1+5-7".into(),
            vec![
                view("2-1", Confirmed, 1, 5_000),
                view("5-7", Expired, 1, 4_000),
            ],
        );
        assert_eq!(mixed.state, Mixed as i32);
        assert_eq!(mixed.parts[1].state, Expired as i32);
    }

    #[test]
    fn a_refusing_part_is_named_and_an_unknown_one_asks_for_a_retry() {
        let joined = Joined::parse("2-17+5-40", 8).expect("joined");
        let not_pending = status::status(
            Code::FailedPrecondition,
            "reservation is EXPIRED, not pending".into(),
            "RESERVATION_NOT_PENDING",
            &[("state", "EXPIRED".into())],
        );
        let e = joined
            .all_done(
                vec![Answer::Done(1), Answer::Refused(not_pending.clone())],
                true,
            )
            .expect_err("a part refused");
        assert_eq!(e.code(), Code::FailedPrecondition);
        assert_eq!(
            e.message(),
            "part 5-40 of 2-17+5-40: reservation is EXPIRED, not pending; parts 2-17 did act"
        );
        let info = e.get_details_error_info().expect("ErrorInfo");
        assert_eq!(info.metadata["part"], "5-40");
        assert_eq!(info.metadata["state"], "EXPIRED");
        let e = joined
            .all_done(
                vec![
                    Answer::<i32>::Refused(not_pending),
                    Answer::Unknown(Status::unavailable("no leader")),
                ],
                true,
            )
            .expect_err("a part unknown");
        assert_eq!(e.code(), Code::Aborted);
        assert_eq!(
            e.get_details_error_info().expect("info").metadata["shard"],
            "5"
        );
        assert_eq!(
            joined
                .all_done(vec![Answer::Done(1), Answer::Done(2)], true)
                .ok(),
            Some(vec![1, 2])
        );
        for bad in ["2-17", "2-17+2-18", "garbage+"] {
            let e = Joined::parse(bad, 8).err().expect(bad);
            assert_eq!(e.code(), Code::InvalidArgument);
            assert_eq!(
                e.get_details_error_info().expect("info").metadata["field"],
                "reservation_id"
            );
        }
    }
}
