//! `ReserveBatch`: many independent reserves in one call, each answered
//! exactly as a `Reserve` of that item would be, for the cost of one
//! proposal per shard.
//!
//! Each item goes through the checks of a single `Reserve`, in the same
//! order (request id, fill policy, shards, then for a first attempt the
//! sold-out pre-filter and hot-SKU admission); an item that fails one gets
//! that error as its result. The items left for shards this node leads
//! become engine commands (their strings moved, not copied) and go to the
//! driver as one [`Inbound::ProposeBatch`] per shard: one inbox message, one
//! reply channel and one place in one log entry for the whole share. Items
//! for shards another node leads go there as one forwarded batch per
//! leader; an item whose lines span shards runs as a cross-shard `Reserve`.
//!
//! Why not one `Reserve` per item: that cost a future, an inbox message, a
//! reply channel and a wake-up per item, and the copies of every request.

use super::{
    bad_id, engine_reserve_owned, fill_policy, reserve_response, single_shard, unexpected,
    InventoryService, FIRST_ATTEMPT_HEADER, FORWARDED,
};
use crate::admission::Admitted;
use crate::ids;
use crate::node::messages::{AppliedDetail, BatchProposeResult, Inbound};
use crate::node::SubmitError;
use crate::pb::inventory as pb;
use crate::pb::inventory::inventory_server::Inventory;
use crate::status;
use futures_util::future::join_all;
use holdfast_engine::{self as engine, shard_of, Command, CommandKind, Outcome, Success};
use std::collections::BTreeMap;
use tokio::sync::oneshot;
use tonic::metadata::MetadataValue;
use tonic::{Request, Response, Status};
use tonic_types::StatusExt;

/// Items a `ReserveBatch` may carry.
pub const RESERVE_BATCH_MAX: usize = 1_000;

/// One failed batch item, as the status a single call would have returned.
pub(super) fn item_error(s: &Status) -> pb::ReserveBatchResult {
    let info = s.get_details_error_info();
    pb::ReserveBatchResult {
        result: Some(pb::reserve_batch_result::Result::Error(pb::ItemError {
            code: s.code() as i32,
            message: s.message().to_string(),
            reason: info.as_ref().map(|i| i.reason.clone()).unwrap_or_default(),
            metadata: info
                .map(|i| i.metadata.into_iter().collect())
                .unwrap_or_default(),
        })),
    }
}

fn item_reserved(r: pb::ReserveResponse) -> pb::ReserveBatchResult {
    pb::ReserveBatchResult {
        result: Some(pb::reserve_batch_result::Result::Reserved(r)),
    }
}

/// The items of one shard this node proposes together.
struct ShardShare<'a> {
    /// Item positions in the request, in proposal order.
    positions: Vec<usize>,
    /// The items' wire request ids, kept for sending the items on if this
    /// node turns out not to lead the shard.
    request_ids: Vec<String>,
    /// The items' commands.
    commands: Vec<Command>,
    /// Admission places of first attempts, held until the share is
    /// answered, as a single `Reserve` holds its own.
    _admitted: Vec<Admitted<'a>>,
}

/// Where the items of one batch go.
#[derive(Default)]
struct Plan<'a> {
    /// Answers known before any proposal (an item that failed a check).
    early: Vec<(usize, pb::ReserveBatchResult)>,
    /// Shares proposed here, by shard.
    local: BTreeMap<u32, ShardShare<'a>>,
    /// Items for shards other nodes lead, by leader.
    remote: BTreeMap<u64, Vec<(usize, pb::ReserveRequest)>>,
    /// Items whose lines span shards (cross-shard reserves).
    cross: Vec<(usize, pb::ReserveRequest)>,
}

/// How a call's items are marked: as the batch call was.
#[derive(Clone, Copy)]
struct Marks {
    /// Forwarded by another node: never forwarded again.
    forwarded: bool,
    /// The caller's first attempt (pre-filter and admission apply).
    first_attempt: bool,
}

impl Marks {
    /// `request` marked as the batch was.
    fn mark<T>(self, mut request: Request<T>) -> Request<T> {
        if self.forwarded {
            request
                .metadata_mut()
                .insert(FORWARDED, MetadataValue::from_static("1"));
        }
        if self.first_attempt {
            request
                .metadata_mut()
                .insert(FIRST_ATTEMPT_HEADER, MetadataValue::from_static("1"));
        }
        request
    }
}

/// Serves `ReserveBatch`.
pub(super) async fn reserve_batch(
    svc: &InventoryService,
    request: Request<pb::ReserveBatchRequest>,
) -> Result<Response<pb::ReserveBatchResponse>, Status> {
    let marks = Marks {
        forwarded: request.metadata().contains_key(FORWARDED),
        first_attempt: request.metadata().contains_key(FIRST_ATTEMPT_HEADER),
    };
    let items = request.into_inner().reservations;
    if items.is_empty() || items.len() > RESERVE_BATCH_MAX {
        return Err(status::invalid(
            "reservations",
            &format!(
                "must hold 1..={RESERVE_BATCH_MAX} items, not {}",
                items.len()
            ),
        ));
    }
    let count = items.len();
    let plan = svc.plan_batch(items, marks);
    let local = join_all(
        plan.local
            .into_iter()
            .map(|(shard, share)| svc.propose_share(shard, share, marks)),
    );
    let remote = join_all(
        plan.remote
            .into_iter()
            .map(|(leader, part)| svc.forward_part(leader, part, marks)),
    );
    let cross = join_all(plan.cross.into_iter().map(|(i, item)| async move {
        let answer = match svc.reserve(marks.mark(Request::new(item))).await {
            Ok(response) => item_reserved(response.into_inner()),
            Err(s) => item_error(&s),
        };
        (i, answer)
    }));
    let (local, remote, cross) = tokio::join!(local, remote, cross);
    let mut results: Vec<Option<pb::ReserveBatchResult>> = (0..count).map(|_| None).collect();
    let answered = plan
        .early
        .into_iter()
        .chain(local.into_iter().flatten())
        .chain(remote.into_iter().flatten())
        .chain(cross);
    for (i, result) in answered {
        results[i] = Some(result);
    }
    let missing = || item_error(&Status::internal("the item got no answer"));
    Ok(Response::new(pb::ReserveBatchResponse {
        results: results
            .into_iter()
            .map(|r| r.unwrap_or_else(missing))
            .collect(),
    }))
}

impl InventoryService {
    /// Runs every item's checks and sorts the items by where they go.
    /// Items are routed by their first line's shard, as before any check
    /// (the leader checks them).
    fn plan_batch(&self, items: Vec<pb::ReserveRequest>, marks: Marks) -> Plan<'_> {
        let mut plan = Plan::default();
        for (i, item) in items.into_iter().enumerate() {
            let leader = item
                .lines
                .first()
                .and_then(|l| self.node.routing.leader(shard_of(&l.sku, self.node.shards)));
            match leader {
                Some(l) if l != self.node.id && !marks.forwarded && !self.faults.is_blocked(l) => {
                    plan.remote.entry(l).or_default().push((i, item))
                }
                _ => self.plan_item(&mut plan, i, item, marks.first_attempt),
            }
        }
        plan
    }

    /// The checks a single `Reserve` runs before proposing, in its order;
    /// puts item `i` where it goes next.
    fn plan_item<'a>(
        &'a self,
        plan: &mut Plan<'a>,
        i: usize,
        mut item: pb::ReserveRequest,
        first_attempt: bool,
    ) {
        let checked = ids::request_id(&item.request_id)
            .map_err(bad_id)
            .and_then(|id| Ok((id, fill_policy(item.policy)?)));
        let (request_id, policy) = match checked {
            Ok(c) => c,
            Err(s) => return plan.early.push((i, item_error(&s))),
        };
        let skus = item.lines.iter().map(|l| l.sku.as_str());
        let Some(shard) = single_shard(skus, self.node.shards) else {
            return plan.cross.push((i, item));
        };
        let mut admitted = None;
        if first_attempt {
            match self.prefilter(shard, &item, policy) {
                Ok(a) => admitted = a,
                Err(s) => return plan.early.push((i, item_error(&s))),
            }
        }
        let share = plan.local.entry(shard).or_insert_with(|| ShardShare {
            positions: Vec::new(),
            request_ids: Vec::new(),
            commands: Vec::new(),
            _admitted: Vec::new(),
        });
        share.positions.push(i);
        share.request_ids.push(std::mem::take(&mut item.request_id));
        share.commands.push(Command {
            request_id,
            kind: CommandKind::Reserve(engine_reserve_owned(item, policy)),
        });
        share._admitted.extend(admitted);
    }

    /// Proposes one shard's share on this node's driver and answers each of
    /// its items; if another node leads the shard after all, sends them
    /// there, as `execute` does for a single `Reserve`.
    async fn propose_share(
        &self,
        shard: u32,
        share: ShardShare<'_>,
        marks: Marks,
    ) -> Vec<(usize, pb::ReserveBatchResult)> {
        let ShardShare {
            positions,
            request_ids,
            commands,
            _admitted,
        } = share;
        let every = |s: Status| {
            let error = item_error(&s);
            positions.iter().map(|&i| (i, error.clone())).collect()
        };
        let (tx, rx) = oneshot::channel();
        let submitted = self.node.submit(Inbound::ProposeBatch {
            shard,
            commands,
            reply: tx,
        });
        if let Err(e) = submitted {
            return every(match e {
                SubmitError::Overloaded => {
                    Status::resource_exhausted("node overloaded; retry with the same request id")
                }
                SubmitError::Stopped => Status::unavailable("node is stopping"),
            });
        }
        let Ok(answer) = rx.await else {
            return every(Status::unavailable(
                "node stopped before answering; retry with the same request id",
            ));
        };
        match answer {
            BatchProposeResult::Applied(outcomes) if outcomes.len() == positions.len() => positions
                .iter()
                .zip(outcomes)
                .map(|(&i, (outcome, detail))| (i, self.item_answer(shard, outcome, detail)))
                .collect(),
            BatchProposeResult::Applied(_) => every(Status::internal(
                "the driver answered another number of items",
            )),
            BatchProposeResult::Aborted { why } => every(status::aborted(shard, why)),
            BatchProposeResult::NotLeader { leader, commands } => {
                match leader.filter(|&l| l != self.node.id) {
                    Some(l) if !marks.forwarded => {
                        let items = request_ids
                            .into_iter()
                            .zip(commands)
                            .map(|(id, command)| reserve_request_of(id, command))
                            .collect::<Vec<_>>();
                        let part = positions.into_iter().zip(items).collect();
                        self.forward_part(l, part, marks).await
                    }
                    other => every(status::unavailable(
                        shard,
                        other.and_then(|l| self.peers.get(&l)).map(String::as_str),
                    )),
                }
            }
        }
    }

    /// One applied item's answer, as `Reserve` builds it.
    fn item_answer(
        &self,
        shard: u32,
        outcome: Outcome,
        detail: AppliedDetail,
    ) -> pb::ReserveBatchResult {
        match outcome {
            Ok(Success::Reserved { reservation }) => {
                item_reserved(reserve_response(shard, reservation, detail))
            }
            Ok(other) => item_error(&unexpected(&Ok(other))),
            Err(refusal) => {
                let sku = |line: u16| {
                    detail
                        .line_sku
                        .as_ref()
                        .filter(|(l, _)| *l == line)
                        .map(|(_, sku)| sku.clone())
                };
                item_error(&self.refusal_status_with(&refusal, &detail, &sku))
            }
        }
    }

    /// Sends `part` (positions and items) to `leader` as one forwarded
    /// batch, marked as the call was; if the leader cannot be reached, or
    /// answers another number of items, every item gets that error.
    async fn forward_part(
        &self,
        leader: u64,
        part: Vec<(usize, pb::ReserveRequest)>,
        marks: Marks,
    ) -> Vec<(usize, pb::ReserveBatchResult)> {
        let (positions, items): (Vec<usize>, Vec<pb::ReserveRequest>) = part.into_iter().unzip();
        let shard = items
            .first()
            .and_then(|r| r.lines.first())
            .map_or(0, |l| shard_of(&l.sku, self.node.shards));
        // `forward` marks the call as forwarded and passes the first-attempt
        // mark on from the request it is given.
        let request = Marks {
            forwarded: false,
            ..marks
        }
        .mark(Request::new(pb::ReserveBatchRequest {
            reservations: items,
        }));
        let results = match self
            .forward(leader, shard, &request, |mut c, req| async move {
                c.reserve_batch(req).await
            })
            .await
        {
            Ok(response) if response.get_ref().results.len() == positions.len() => {
                response.into_inner().results
            }
            Ok(_) => {
                let s = Status::internal("the leader answered another number of items");
                vec![item_error(&s); positions.len()]
            }
            Err(s) => vec![item_error(&s); positions.len()],
        };
        positions.into_iter().zip(results).collect()
    }
}

/// The wire form of a reserve command, to send it on to the leader: the
/// inverse of `engine_reserve_owned`, so the leader builds the same command
/// (same request id, same body digest).
fn reserve_request_of(request_id: String, command: Command) -> pb::ReserveRequest {
    let CommandKind::Reserve(r) = command.kind else {
        // Only reserves are in a batch's share.
        return pb::ReserveRequest {
            request_id,
            ..Default::default()
        };
    };
    pb::ReserveRequest {
        request_id,
        owner_id: r.owner,
        customer_id: r.customer,
        region: r.region,
        lines: r
            .lines
            .into_iter()
            .map(|l| pb::ReserveLine {
                sku: l.sku,
                quantity: l.quantity,
                location: l.location,
            })
            .collect(),
        ttl_ms: r.ttl_ms,
        policy: match r.policy {
            engine::FillPolicy::AllOrNothing => pb::FillPolicy::AllOrNothing,
            engine::FillPolicy::Partial => pb::FillPolicy::Partial,
        } as i32,
        allow_split: r.allow_split,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::engine_reserve;

    /// Sending a share on to the leader rebuilds each item so that the
    /// leader makes the very command this node made: same body, same
    /// digest, whatever the policy and optional fields.
    #[test]
    fn a_command_sent_on_is_the_same_command() {
        let item = pb::ReserveRequest {
            request_id: "r-1".into(),
            owner_id: "cart".into(),
            customer_id: "cust".into(),
            region: Some("eu".into()),
            lines: vec![
                pb::ReserveLine {
                    sku: "A".into(),
                    quantity: 2,
                    location: None,
                },
                pb::ReserveLine {
                    sku: "B".into(),
                    quantity: 0,
                    location: Some("berlin".into()),
                },
            ],
            ttl_ms: 60_000,
            policy: pb::FillPolicy::Unspecified as i32,
            allow_split: true,
        };
        for policy in [
            pb::FillPolicy::Unspecified,
            pb::FillPolicy::AllOrNothing,
            pb::FillPolicy::Partial,
        ] {
            let item = pb::ReserveRequest {
                policy: policy as i32,
                ..item.clone()
            };
            let engine_policy = fill_policy(item.policy).unwrap();
            let reserve = engine_reserve(&item, engine_policy);
            let command = Command {
                request_id: engine::RequestId(7),
                kind: CommandKind::Reserve(engine_reserve_owned(item.clone(), engine_policy)),
            };
            let digest = command.body_digest();
            let again = reserve_request_of(item.request_id.clone(), command);
            assert_eq!(again.request_id, item.request_id);
            let rebuilt = engine_reserve(&again, fill_policy(again.policy).unwrap());
            assert_eq!(rebuilt, reserve);
            let rebuilt = Command {
                request_id: engine::RequestId(7),
                kind: CommandKind::Reserve(rebuilt),
            };
            assert_eq!(rebuilt.body_digest(), digest);
        }
    }
}
