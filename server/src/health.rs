//! `grpc.health.v1.Health`: whether this node has caught up.
//!
//! Unit of work: one *poll*, every [`HEALTH_POLL_MS`]. The health task asks
//! the driver for every shard's status (an `Inbound::Status`, O(shards) on
//! the driver thread), decides [`caught_up`], and sets the overall service
//! (`""`) and `holdfast.inventory.v1.Inventory` to SERVING or NOT_SERVING
//! accordingly. The same poll copies the node's figures into Prometheus
//! (`telemetry`), so both read one status.
//!
//! Both start NOT_SERVING, and go back to NOT_SERVING for good when the
//! node starts shutting down (the task is told to stop).

use crate::node::messages::ShardStatus;
use crate::node::{NodeHandle, SubmitError};
use crate::pb::inventory::inventory_server::SERVICE_NAME as INVENTORY_SERVICE;
use crate::telemetry::NodeTelemetry;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tonic_health::server::HealthReporter;
use tonic_health::ServingStatus;

/// How often health is re-decided (and node metrics refreshed), ms: quick
/// enough for a load balancer to follow a leader change, cheap for the
/// driver (one O(shards) request).
pub const HEALTH_POLL_MS: u64 = 200;
/// How long a status request may wait for the driver, ms; a driver that
/// answers later is stuck and the node is not serving.
pub const STATUS_TIMEOUT_MS: u64 = 1_000;
/// How long an overloaded inbox (status request refused) keeps the last
/// decision before the node counts as not serving, ms.
pub const STATUS_STALE_MS: u64 = 1_000;

/// The health services this task reports on.
const SERVICES: [&str; 2] = ["", INVENTORY_SERVICE];

/// Whether this node has caught up, from two status readings of the same
/// node: `now`, and `before`, the previous poll's (if any).
///
/// Caught up means: the node runs at least one shard, and for every shard
/// 1. a leader is known;
/// 2. the entry at the applied index is of the current term: this node has
///    applied the leader's first entry of its term (the empty entry every
///    new leader appends), so it holds everything committed before the
///    leader took over;
/// 3. the applied index has reached the commit index this node knew one
///    poll earlier (`before`), or, without an earlier reading, the one it
///    knows now.
///
/// Why one poll earlier: a status request is served between two driver
/// loop turns, and a peer's message handled in the same turn may have just
/// moved the commit index past what the turn will apply. Under steady load
/// `applied < commit now` is then true for a moment on every follower and
/// would make health flap; an applied index that has not passed what was
/// committed a poll ago means apply is falling behind.
///
/// What it cannot see: a follower learns of commits only for entries it
/// has, so one that has the leader's first entry but is still receiving
/// the entries committed since (a long outage within the leader's term)
/// counts as caught up while it receives the tail; its reads are then
/// stale, its writes are forwarded to the leader anyway. Each shard is
/// NOT_SERVING for the moment a new leader's first entry takes to commit.
///
/// The error says which shard is behind and why.
pub fn caught_up(now: &[ShardStatus], before: Option<&[ShardStatus]>) -> Result<(), String> {
    if now.is_empty() {
        return Err("the node runs no shard".into());
    }
    for (i, s) in now.iter().enumerate() {
        if s.leader == 0 {
            return Err(format!("shard {} has no known leader", s.shard));
        }
        if s.applied_term != s.term {
            return Err(format!(
                "shard {} has not applied an entry of its leader's term {} (last applied: term {}, index {})",
                s.shard, s.term, s.applied_term, s.applied
            ));
        }
        let earlier = before
            .and_then(|b| b.get(i))
            .filter(|b| b.shard == s.shard)
            .map_or(s.commit, |b| b.commit.min(s.commit));
        if s.applied < earlier {
            return Err(format!(
                "shard {} applied index {} is behind commit index {}",
                s.shard, s.applied, earlier
            ));
        }
    }
    Ok(())
}

/// Sets every reported service to `serving` or NOT_SERVING.
async fn report(reporter: &HealthReporter, serving: bool) {
    let status = if serving {
        ServingStatus::Serving
    } else {
        ServingStatus::NotServing
    };
    for service in SERVICES {
        reporter.set_service_status(service, status).await;
    }
}

/// A health reporter whose services start NOT_SERVING, and its gRPC
/// service. (`tonic_health` starts the overall service SERVING.)
pub async fn reporter() -> (
    HealthReporter,
    tonic_health::pb::health_server::HealthServer<impl tonic_health::pb::health_server::Health>,
) {
    let (reporter, service) = tonic_health::server::health_reporter();
    report(&reporter, false).await;
    (reporter, service)
}

/// The health task: polls `node` until `stop` turns true (or its sender
/// is gone), then reports NOT_SERVING and returns. Refreshes `telemetry`
/// on each poll when given.
pub async fn run(
    node: NodeHandle,
    reporter: HealthReporter,
    telemetry: Option<NodeTelemetry>,
    mut stop: watch::Receiver<bool>,
) {
    let mut interval = tokio::time::interval(Duration::from_millis(HEALTH_POLL_MS));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut poll = Poll::default();
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            changed = stop.changed() => {
                if changed.is_err() || *stop.borrow() {
                    break;
                }
                continue;
            }
        }
        if let Some(t) = &telemetry {
            t.publish_counters();
        }
        let status =
            tokio::time::timeout(Duration::from_millis(STATUS_TIMEOUT_MS), node.status()).await;
        let Some(verdict) = poll.decide(status, telemetry.as_ref()) else {
            continue;
        };
        let serving = verdict.is_ok();
        if poll.serving != Some(serving) {
            match &verdict {
                Ok(()) => {
                    tracing::info!("health: SERVING (every shard has a leader and is applied)")
                }
                // Losing SERVING is news; not having it yet at start is not.
                Err(why) if poll.serving == Some(true) => {
                    tracing::warn!(why = %why, "health: NOT_SERVING")
                }
                Err(why) => tracing::info!(why = %why, "health: NOT_SERVING"),
            }
            report(&reporter, serving).await;
            poll.serving = Some(serving);
        }
        if let Some(t) = &telemetry {
            t.publish_serving(serving);
        }
    }
    report(&reporter, false).await;
    if let Some(t) = &telemetry {
        t.publish_serving(false);
    }
    tracing::info!("health: NOT_SERVING (shutting down)");
}

/// What the health task remembers between polls.
#[derive(Default)]
struct Poll {
    /// The last successful status reading.
    before: Option<Vec<ShardStatus>>,
    /// When the driver last answered.
    answered_at: Option<Instant>,
    /// What is reported now (`None`: nothing yet beyond the initial
    /// NOT_SERVING).
    serving: Option<bool>,
}

type StatusReply = Result<Result<Vec<ShardStatus>, SubmitError>, tokio::time::error::Elapsed>;

impl Poll {
    /// The verdict of one status reply; `None`: keep the current one (the
    /// inbox was full, briefly).
    fn decide(
        &mut self,
        reply: StatusReply,
        telemetry: Option<&NodeTelemetry>,
    ) -> Option<Result<(), String>> {
        match reply {
            Ok(Ok(now)) => {
                if let Some(t) = telemetry {
                    t.publish_shards(&now);
                }
                let verdict = caught_up(&now, self.before.as_deref());
                self.before = Some(now);
                self.answered_at = Some(Instant::now());
                Some(verdict)
            }
            Ok(Err(SubmitError::Overloaded)) => {
                let stale = self
                    .answered_at
                    .is_none_or(|t| t.elapsed() >= Duration::from_millis(STATUS_STALE_MS));
                stale.then(|| Err("the driver's inbox has been full for a second".into()))
            }
            Ok(Err(SubmitError::Stopped)) => Some(Err("the driver has stopped".into())),
            Err(_) => Some(Err(format!(
                "the driver did not answer a status request within {STATUS_TIMEOUT_MS} ms"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shard(shard: u32, leader: u64, commit: u64, applied: u64) -> ShardStatus {
        ShardStatus {
            shard,
            leader,
            term: 2,
            commit,
            applied,
            applied_term: 2,
            digest: None,
            reservations: 0,
            pending: 0,
        }
    }

    #[test]
    fn caught_up_needs_a_leader_for_every_shard() {
        let now = [shard(0, 1, 5, 5), shard(1, 0, 5, 5)];
        let e = caught_up(&now, None).expect_err("shard 1 has no leader");
        assert!(e.contains("shard 1") && e.contains("leader"), "{e}");
        assert!(caught_up(&[shard(0, 1, 5, 5), shard(1, 3, 5, 5)], None).is_ok());
        assert!(caught_up(&[], None).is_err(), "no shard is not serving");
    }

    #[test]
    fn caught_up_needs_applied_to_reach_the_commit_known_one_poll_earlier() {
        let before = [shard(0, 1, 10, 10)];
        // Commit moved on since, apply not yet: still caught up.
        assert!(caught_up(&[shard(0, 1, 12, 10)], Some(&before)).is_ok());
        // Apply has not reached what was committed a poll ago: behind.
        let e = caught_up(&[shard(0, 1, 12, 9)], Some(&before)).expect_err("behind");
        assert!(
            e.contains("applied index 9") && e.contains("commit index 10"),
            "{e}"
        );
        // Without an earlier reading, the commit known now is the bar.
        assert!(caught_up(&[shard(0, 1, 12, 10)], None).is_err());
        assert!(caught_up(&[shard(0, 1, 12, 12)], None).is_ok());
    }

    #[test]
    fn caught_up_needs_an_applied_entry_of_the_current_term() {
        // A follower that heard of the leader (term 3) before receiving its
        // first entry: everything it has is applied, but it is behind.
        let mut s = shard(0, 2, 0, 0);
        s.term = 3;
        s.applied_term = 0;
        let e = caught_up(std::slice::from_ref(&s), None).expect_err("no entry of term 3");
        assert!(e.contains("term 3"), "{e}");
        s.applied = 7;
        s.commit = 7;
        s.applied_term = 3;
        assert!(caught_up(&[s], None).is_ok());
    }
}
