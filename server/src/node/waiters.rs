//! Who waits for which commands of a shard, and how they are answered.
//!
//! A proposer covers a *run* of consecutive commands: one `Reserve` covers
//! one, a `ReserveBatch`'s share of a shard covers all of its items, the
//! leader's own `ExpireUpTo` is covered by nobody. A run is queued, proposed
//! and answered whole: it never splits over two entries, and it gets one
//! answer for all of its commands.
//!
//! Why runs rather than one channel per command: a batch of a thousand
//! reserves would otherwise cost a thousand inbox messages, channels,
//! sends and wake-ups, all on the one driver thread.

use super::messages::{AppliedDetail, BatchProposeResult, ProposeResult};
use holdfast_engine::{Command, Outcome};
use tokio::sync::oneshot;

/// Where the answer for a run of commands goes.
pub enum Reply {
    /// Nobody waits (the leader's own commands, or a run already answered
    /// early by the unsafe chaos build).
    Nobody,
    /// The proposer of one command.
    One(oneshot::Sender<ProposeResult>),
    /// The proposer of a run of commands (a batch's share of the shard).
    Batch(oneshot::Sender<BatchProposeResult>),
}

/// A proposer and how many consecutive commands are its.
pub struct Waiter {
    /// Commands it covers (at least one).
    pub count: usize,
    /// Where their answer goes.
    pub reply: Reply,
}

/// Commands gathered for a shard's next entry, with their waiters in the
/// same order.
#[derive(Default)]
pub struct Queue {
    commands: Vec<Command>,
    waiters: Vec<Waiter>,
}

impl Queue {
    /// Queues one command for `reply`.
    pub fn push(&mut self, command: Command, reply: Reply) {
        self.commands.push(command);
        self.waiters.push(Waiter { count: 1, reply });
    }

    /// Queues a run of commands answered together to `reply`; an empty run
    /// is answered at once.
    pub fn push_batch(
        &mut self,
        commands: Vec<Command>,
        reply: oneshot::Sender<BatchProposeResult>,
    ) {
        if commands.is_empty() {
            let _ = reply.send(BatchProposeResult::Applied(Vec::new()));
            return;
        }
        let count = commands.len();
        if self.commands.is_empty() {
            self.commands = commands;
        } else {
            self.commands.extend(commands);
        }
        self.waiters.push(Waiter {
            count,
            reply: Reply::Batch(reply),
        });
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.waiters.is_empty()
    }

    /// Takes whole runs from the front, up to `max` commands but always at
    /// least one run (however long), for one entry.
    pub fn take(&mut self, max: usize) -> (Vec<Command>, Vec<Waiter>) {
        if self.commands.len() <= max {
            return (
                std::mem::take(&mut self.commands),
                std::mem::take(&mut self.waiters),
            );
        }
        let mut commands = 0;
        let mut runs = 0;
        for w in &self.waiters {
            if runs > 0 && commands + w.count > max {
                break;
            }
            commands += w.count;
            runs += 1;
        }
        let rest_waiters = self.waiters.split_off(runs);
        let rest_commands = self.commands.split_off(commands);
        (
            std::mem::replace(&mut self.commands, rest_commands),
            std::mem::replace(&mut self.waiters, rest_waiters),
        )
    }

    /// Takes everything queued.
    pub fn take_all(&mut self) -> (Vec<Command>, Vec<Waiter>) {
        self.take(usize::MAX)
    }
}

/// Commands covered by `waiters` in all.
pub fn covered(waiters: &[Waiter]) -> usize {
    waiters.iter().map(|w| w.count).sum()
}

/// Sends each waiter its share of `outcomes` (one per command, in order)
/// and leaves it answered (`Reply::Nobody`). `outcomes` must cover every
/// waiter; the caller checks with [`covered`].
pub fn send_applied(waiters: &mut [Waiter], outcomes: Vec<(Outcome, AppliedDetail)>) {
    let mut outcomes = outcomes.into_iter();
    for w in waiters {
        match std::mem::replace(&mut w.reply, Reply::Nobody) {
            Reply::Nobody => {
                outcomes.by_ref().take(w.count).for_each(drop);
            }
            Reply::One(tx) => {
                if let Some((outcome, detail)) = outcomes.next() {
                    let _ = tx.send(ProposeResult::Applied { outcome, detail });
                }
            }
            Reply::Batch(tx) => {
                let share = outcomes.by_ref().take(w.count).collect();
                let _ = tx.send(BatchProposeResult::Applied(share));
            }
        }
    }
}

/// Tells every waiter that this node does not lead the shard (`leader`:
/// who does, if known). A batch gets its commands back, so the service can
/// send them on to the leader.
pub fn not_leader(waiters: Vec<Waiter>, commands: Vec<Command>, leader: Option<u64>) {
    let mut commands = commands.into_iter();
    for w in waiters {
        let mine = commands.by_ref().take(w.count);
        match w.reply {
            Reply::Nobody => mine.for_each(drop),
            Reply::One(tx) => {
                mine.for_each(drop);
                let _ = tx.send(ProposeResult::NotLeader { leader });
            }
            Reply::Batch(tx) => {
                let commands = mine.collect();
                let _ = tx.send(BatchProposeResult::NotLeader { leader, commands });
            }
        }
    }
}

/// Fails every waiter with `Aborted` (`why`): the commands may or may not
/// apply later, so a retry with the same request ids is what is safe.
pub fn abort(waiters: Vec<Waiter>, why: &'static str) {
    for w in waiters {
        match w.reply {
            Reply::Nobody => {}
            Reply::One(tx) => {
                let _ = tx.send(ProposeResult::Aborted { why });
            }
            Reply::Batch(tx) => {
                let _ = tx.send(BatchProposeResult::Aborted { why });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use holdfast_engine::{CommandKind, ExpireUpTo, RequestId, Success};

    fn command(n: u64) -> Command {
        Command {
            request_id: RequestId(n as u128),
            kind: CommandKind::ExpireUpTo(ExpireUpTo { up_to_ms: n }),
        }
    }

    fn batch(queue: &mut Queue, ns: std::ops::Range<u64>) -> oneshot::Receiver<BatchProposeResult> {
        let (tx, rx) = oneshot::channel();
        queue.push_batch(ns.map(command).collect(), tx);
        rx
    }

    fn applied(n: u64) -> (Outcome, AppliedDetail) {
        let outcome = Ok(Success::Expired {
            reservations: n,
            units_released: 0,
        });
        (outcome, AppliedDetail::default())
    }

    /// A run is never split over two entries: `take` stops before a run
    /// that would pass the bound, but always takes at least one run.
    #[test]
    fn take_keeps_runs_whole() {
        let mut q = Queue::default();
        let _a = batch(&mut q, 0..3);
        q.push(command(3), Reply::Nobody);
        let _b = batch(&mut q, 4..10);
        let (commands, waiters) = q.take(5);
        assert_eq!(commands.len(), 4);
        assert_eq!(covered(&waiters), 4);
        let (commands, waiters) = q.take(2);
        assert_eq!(commands.len(), 6, "a run longer than the bound goes whole");
        assert_eq!(waiters.len(), 1);
        assert_eq!(commands[0], command(4));
        assert!(q.is_empty());
    }

    /// Each waiter gets exactly its own outcomes, in order.
    #[test]
    fn answers_split_by_run() {
        let mut q = Queue::default();
        let mut a = batch(&mut q, 0..2);
        let (tx, mut one) = oneshot::channel();
        q.push(command(2), Reply::One(tx));
        q.push(command(3), Reply::Nobody);
        let mut b = batch(&mut q, 4..7);
        let (_, mut waiters) = q.take_all();
        assert_eq!(covered(&waiters), 7);
        send_applied(&mut waiters, (0..7).map(applied).collect());
        let expired = |r: &(Outcome, AppliedDetail)| match r.0 {
            Ok(Success::Expired { reservations, .. }) => reservations,
            _ => u64::MAX,
        };
        match a.try_recv() {
            Ok(BatchProposeResult::Applied(v)) => {
                assert_eq!(v.iter().map(expired).collect::<Vec<_>>(), [0, 1])
            }
            _ => panic!("a answered"),
        }
        match one.try_recv() {
            Ok(ProposeResult::Applied { outcome, .. }) => {
                assert_eq!(expired(&(outcome, AppliedDetail::default())), 2)
            }
            _ => panic!("one answered"),
        }
        match b.try_recv() {
            Ok(BatchProposeResult::Applied(v)) => {
                assert_eq!(v.iter().map(expired).collect::<Vec<_>>(), [4, 5, 6])
            }
            _ => panic!("b answered"),
        }
        assert!(waiters.iter().all(|w| matches!(w.reply, Reply::Nobody)));
    }

    /// A batch told "not leader" gets its own commands back; others get
    /// the plain answer.
    #[test]
    fn not_leader_gives_a_batch_its_commands() {
        let mut q = Queue::default();
        let (tx, mut one) = oneshot::channel();
        q.push(command(0), Reply::One(tx));
        let mut b = batch(&mut q, 1..4);
        let (commands, waiters) = q.take_all();
        not_leader(waiters, commands, Some(2));
        assert!(matches!(
            one.try_recv(),
            Ok(ProposeResult::NotLeader { leader: Some(2) })
        ));
        match b.try_recv() {
            Ok(BatchProposeResult::NotLeader { leader, commands }) => {
                assert_eq!(leader, Some(2));
                assert_eq!(commands, (1..4).map(command).collect::<Vec<_>>());
            }
            _ => panic!("b answered"),
        }
    }

    proptest::proptest! {
        /// Whatever the runs and the bound, taking entries until the queue
        /// is empty gives every command once, in order, each entry made of
        /// whole runs, within the bound unless it is a single longer run.
        #[test]
        fn entries_are_whole_runs_in_order(
            runs in proptest::collection::vec(1usize..20, 0..30),
            max in 1usize..50,
        ) {
            let mut q = Queue::default();
            let mut next = 0u64;
            let mut receivers = Vec::new();
            for &len in &runs {
                if len == 1 {
                    q.push(command(next), Reply::Nobody);
                } else {
                    receivers.push(batch(&mut q, next..next + len as u64));
                }
                next += len as u64;
            }
            let (mut seen, mut seen_runs) = (Vec::new(), Vec::new());
            while !q.is_empty() {
                let (commands, waiters) = q.take(max);
                proptest::prop_assert_eq!(covered(&waiters), commands.len());
                proptest::prop_assert!(commands.len() <= max || waiters.len() == 1);
                seen_runs.extend(waiters.iter().map(|w| w.count));
                seen.extend(commands);
            }
            proptest::prop_assert_eq!(seen, (0..next).map(command).collect::<Vec<_>>());
            proptest::prop_assert_eq!(seen_runs, runs);
        }
    }

    /// An empty batch is answered at once and queues nothing.
    #[test]
    fn an_empty_batch_is_answered_at_once() {
        let mut q = Queue::default();
        let mut b = batch(&mut q, 0..0);
        assert!(q.is_empty());
        assert!(matches!(
            b.try_recv(),
            Ok(BatchProposeResult::Applied(v)) if v.is_empty()
        ));
    }
}
