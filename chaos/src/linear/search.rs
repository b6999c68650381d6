//! The linearizability search: is there one order of the operations that
//! respects real time and that the model accepts step by step?
//!
//! This is the Wing–Gong search with Lowe's memoization, as in Porcupine
//! (`checkSingle` in anishathalye/porcupine) and Knossos' `wgl`: extend a
//! partial linearization one operation at a time, trying only operations
//! that may come next in real time, and backtrack on a dead end. A
//! (linearized set, model state) pair reached before is not explored again,
//! which turns the exponential search into one that is usually close to
//! linear for histories that are linearizable.
//!
//! An operation may come next when it was invoked no later than the
//! earliest return among the *required* operations not yet linearized
//! (equal times count as concurrent, the lenient choice). An operation with
//! no return ([`Operation::ret_us`] `None`: the client never learned its
//! outcome) is optional: it may take effect at any point after its call, or
//! never. The search succeeds once every required operation is placed.
//!
//! *Floating* operations (optional ones, and required ones whose deadline
//! lies after the history, [`Limits::floating_from_us`]) are the hard part:
//! each stays a candidate until placed, so at every dead end the plain
//! search would try every subset of them before backtracking. The search
//! therefore runs in two phases:
//! 1. *lazy*: a floating operation is placed only as part of a short chain
//!    (at most [`CHAIN_OPS_MAX`]) that ends in a required operation the
//!    model refused just before the chain. This finds the linearization of
//!    a typical linearizable history quickly, but may miss one (a floating
//!    operation that must precede an operation that did not need it);
//! 2. *complete*: the plain search, run only if the lazy phase found
//!    nothing. Only it can answer "not linearizable".
//!
//! Unit of work: one call of [`search`] checks one object's history (one
//! stock row); the caller checks rows independently (P-compositionality).
//! Each phase is bounded by a number of model steps, so a hard history ends
//! as [`Verdict::BudgetExhausted`] instead of hanging. Steps, not seconds,
//! keep the verdict the same on every machine.

use super::bitset::BitSet;
use std::collections::{BTreeSet, HashSet};
use std::hash::Hash;

/// A sequential specification: which states an operation may be applied
/// in, and what it leaves.
pub trait Model {
    /// An operation, with its observed result folded in.
    type Op;
    /// The object's state; hashed for memoization.
    type State: Clone + Eq + Hash;
    /// The state before the history.
    fn init(&self) -> Self::State;
    /// The state after `op`, or `None` if `op` (with its observed result)
    /// cannot happen in `state`.
    fn step(&self, state: &Self::State, op: &Self::Op) -> Option<Self::State>;

    /// Whether placing `a` or `b` (both may come next and have the same
    /// window) leads to the same futures up to renaming, so that the search
    /// need try only one of them. Never, unless a model says so.
    fn interchangeable(&self, _a: &Self::Op, _b: &Self::Op) -> bool {
        false
    }

    /// Whether `op` leaves the state as it is in every state that accepts
    /// it (a read, a refusal). Never, unless a model says so. The search
    /// places such an operation at once when it may come next and the
    /// model accepts it, without trying others first (see
    /// `Search::forced`).
    fn read_only(&self, _op: &Self::Op) -> bool {
        false
    }
}

/// One operation of the history with its real-time window.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Operation<O> {
    /// When it was invoked.
    pub call_us: u64,
    /// When its answer arrived; `None` if it never did (optional: it may
    /// take effect at any time after `call_us`, or never).
    pub ret_us: Option<u64>,
    /// What it did.
    pub op: O,
}

/// Bounds of a search.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Model steps each phase may take.
    pub budget_steps: u64,
    /// Required operations whose deadline is at or after this time float
    /// like optional ones (they must happen, but any time after their
    /// call).
    pub floating_from_us: u64,
}

/// Floating operations a lazy chain may place before the required
/// operation it enables: enough for a read that sees a few unanswered
/// operations at once, small enough that chains stay cheap.
pub const CHAIN_OPS_MAX: usize = 4;

/// The answer of a search.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict<S> {
    /// An order exists; `order` lists the operations placed, in order
    /// (optional operations left out never took effect).
    Linearizable {
        /// Indices into the operations, in linearization order.
        order: Vec<usize>,
    },
    /// No order exists.
    NotLinearizable {
        /// The longest prefix the search could build, in order.
        longest_prefix: Vec<usize>,
        /// The model state after that prefix.
        state: S,
        /// The required operation with the earliest return that could not
        /// be placed after the prefix: the one no order explains.
        stuck: usize,
    },
    /// The step budget ran out before an answer.
    BudgetExhausted,
}

/// A search's verdict and the model steps it took.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome<S> {
    /// The answer.
    pub verdict: Verdict<S>,
    /// Model steps taken, both phases.
    pub steps: u64,
}

/// The operations not yet linearized, in call order, as a doubly linked
/// list over positions: removal and LIFO restoration are O(1).
struct Remaining {
    next: Vec<usize>,
    prev: Vec<usize>,
}

const NIL: usize = usize::MAX;

impl Remaining {
    /// Positions `0..n`, linked in order behind a head sentinel at `n`.
    fn new(n: usize) -> Self {
        let next = (0..=n)
            .map(|p| match p {
                p if p == n && n == 0 => NIL,
                p if p == n => 0,
                p if p + 1 < n => p + 1,
                _ => NIL,
            })
            .collect();
        let prev = (0..=n)
            .map(|p| match p {
                p if p == n => NIL,
                0 => n,
                p => p - 1,
            })
            .collect();
        Remaining { next, prev }
    }

    fn head(&self) -> usize {
        self.next[self.next.len() - 1]
    }

    fn remove(&mut self, p: usize) {
        let (prev, next) = (self.prev[p], self.next[p]);
        self.next[prev] = next;
        if next != NIL {
            self.prev[next] = prev;
        }
    }

    /// Undoes the latest `remove` not yet undone, which must be of `p`.
    fn restore(&mut self, p: usize) {
        let (prev, next) = (self.prev[p], self.next[p]);
        self.next[prev] = p;
        if next != NIL {
            self.prev[next] = p;
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Lazy,
    Complete,
}

/// A lazy chain of floating operations: the required operations the model
/// refused where it began (one of which must end it) and its length.
#[derive(Clone, Debug)]
struct Chain {
    blocked: Vec<usize>,
    len: usize,
}

/// A node of the depth-first search: the operation placed to reach it
/// (with the state before it) and the candidates still to try from it.
struct Frame<S> {
    entered_by: Option<(usize, S)>,
    candidates: Vec<usize>,
    next: usize,
    /// Candidates the model accepted here (explored, or seen before).
    accepted: Vec<usize>,
    /// Non-floating candidates the model refused here.
    refused: Vec<usize>,
    /// Set when this node was reached by a lazy chain.
    chain: Option<Chain>,
}

impl<S> Frame<S> {
    fn new(entered_by: Option<(usize, S)>, candidates: Vec<usize>, chain: Option<Chain>) -> Self {
        Frame {
            entered_by,
            candidates,
            next: 0,
            accepted: Vec::new(),
            refused: Vec::new(),
            chain,
        }
    }
}

struct Search<'a, M: Model> {
    model: &'a M,
    ops: &'a [Operation<M::Op>],
    phase: Phase,
    floating_from_us: u64,
    by_call: Vec<usize>,
    position: Vec<usize>,
    remaining: Remaining,
    /// Required operations not yet placed, by return time.
    required: BTreeSet<(u64, usize)>,
    /// How many of them are not floating.
    fixed_left: usize,
    linearized: BitSet,
    state: M::State,
    /// (linearized set, state) pairs already explored. Only membership is
    /// asked, so its iteration order never reaches the verdict.
    seen: HashSet<(BitSet, M::State)>,
    stack: Vec<Frame<M::State>>,
    deepest: Option<(Vec<usize>, M::State, usize)>,
}

impl<'a, M: Model> Search<'a, M> {
    fn new(model: &'a M, ops: &'a [Operation<M::Op>], phase: Phase, floating_from_us: u64) -> Self {
        let n = ops.len();
        let mut by_call: Vec<usize> = (0..n).collect();
        by_call.sort_by_key(|&i| (ops[i].call_us, i));
        let mut position = vec![0; n];
        for (p, &i) in by_call.iter().enumerate() {
            position[i] = p;
        }
        let fixed_left = ops
            .iter()
            .filter(|o| o.ret_us.is_some_and(|ret| ret < floating_from_us))
            .count();
        let mut s = Search {
            model,
            ops,
            phase,
            floating_from_us,
            fixed_left,
            by_call,
            position,
            remaining: Remaining::new(n),
            required: ops
                .iter()
                .enumerate()
                .filter_map(|(i, o)| o.ret_us.map(|r| (r, i)))
                .collect(),
            linearized: BitSet::new(n),
            state: model.init(),
            seen: HashSet::new(),
            stack: Vec::new(),
            deepest: None,
        };
        let mut candidates = s.candidates();
        if let Some(only) = s.forced(&candidates) {
            candidates = vec![only];
        }
        s.stack.push(Frame::new(None, candidates, None));
        s
    }

    /// Among `candidates`, a required, non-floating, read-only operation
    /// the model accepts in the current state, if any: the only candidate
    /// worth trying. Placing it now loses no linearization. Take any order
    /// that places it later, in some state `t`: it changed nothing there,
    /// so moving it to the front changes no other step, and it is accepted
    /// here; real time allows the move, because every operation that must
    /// precede it returned before it was invoked, so before the earliest
    /// pending return, and is placed already. Without this rule a row with
    /// many concurrent refusals (a flash sale sold out while holds come and
    /// go) makes the search try every subset of them.
    fn forced(&self, candidates: &[usize]) -> Option<usize> {
        candidates.iter().copied().find(|&i| {
            !self.floating(i)
                && self.model.read_only(&self.ops[i].op)
                && self.model.step(&self.state, &self.ops[i].op).is_some()
        })
    }

    fn floating(&self, i: usize) -> bool {
        self.ops[i]
            .ret_us
            .is_none_or(|ret| ret >= self.floating_from_us)
    }

    /// Operations that may come next: invoked no later than the earliest
    /// pending return. The order only steers the search (every candidate
    /// is tried before giving up): required ones first, earliest return
    /// first, as they are what must fit soonest; then floating ones, latest
    /// invoked first, as an operation whose effect a client just observed
    /// was most likely invoked just before.
    fn candidates(&self) -> Vec<usize> {
        let horizon = self.required.first().map_or(u64::MAX, |&(ret, _)| ret);
        let mut fixed = Vec::new();
        let mut floating = Vec::new();
        let mut p = self.remaining.head();
        while p != NIL {
            let i = self.by_call[p];
            if self.ops[i].call_us > horizon {
                break;
            }
            if self.floating(i) {
                floating.push(i);
            } else {
                fixed.push(i);
            }
            p = self.remaining.next[p];
        }
        fixed.sort_by_key(|&i| self.ops[i].ret_us);
        fixed.extend(floating.into_iter().rev());
        fixed
    }

    /// In the lazy phase, whether candidate `i` may be tried at the top
    /// node, and the chain it would start or extend.
    fn lazy_rule(&self, i: usize) -> Result<Option<Chain>, ()> {
        let top = self.stack.last().expect("the root frame stays");
        if self.phase == Phase::Complete {
            return Ok(None);
        }
        if !self.floating(i) {
            return match &top.chain {
                Some(chain) if !chain.blocked.contains(&i) => Err(()),
                _ => Ok(None),
            };
        }
        if self.fixed_left == 0 {
            return Ok(None);
        }
        let chain = match &top.chain {
            Some(c) if c.len >= CHAIN_OPS_MAX => return Err(()),
            Some(c) => Chain {
                blocked: c.blocked.clone(),
                len: c.len + 1,
            },
            None if top.refused.is_empty() => return Err(()),
            None => Chain {
                blocked: top.refused.clone(),
                len: 1,
            },
        };
        Ok(Some(chain))
    }

    fn order(&self) -> Vec<usize> {
        self.stack
            .iter()
            .filter_map(|f| f.entered_by.as_ref().map(|(i, _)| *i))
            .collect()
    }

    /// Places `i`, reaching `after`, unless that node was explored before.
    fn enter(&mut self, i: usize, after: M::State, chain: Option<Chain>) {
        self.linearized.insert(i);
        if !self.seen.insert((self.linearized.clone(), after.clone())) {
            self.linearized.remove(i);
            return;
        }
        self.remaining.remove(self.position[i]);
        if let Some(ret) = self.ops[i].ret_us {
            self.required.remove(&(ret, i));
            self.fixed_left -= usize::from(!self.floating(i));
        }
        let before = std::mem::replace(&mut self.state, after);
        let mut candidates = self.candidates();
        if chain.is_none() {
            // Inside a lazy chain only the blocked operations may end it;
            // elsewhere a read-only operation that fits goes first, alone.
            if let Some(only) = self.forced(&candidates) {
                candidates = vec![only];
            }
        }
        self.stack
            .push(Frame::new(Some((i, before)), candidates, chain));
    }

    /// Leaves the top node (all its candidates failed); `false` at the root.
    fn leave(&mut self) -> bool {
        let depth = self.stack.len() - 1;
        if self.deepest.as_ref().is_none_or(|(p, ..)| p.len() < depth) {
            let stuck = self.required.first().map_or(0, |&(_, i)| i);
            self.deepest = Some((self.order(), self.state.clone(), stuck));
        }
        let frame = self.stack.pop().expect("a frame to leave");
        let Some((i, before)) = frame.entered_by else {
            return false;
        };
        self.state = before;
        self.linearized.remove(i);
        self.remaining.restore(self.position[i]);
        if let Some(ret) = self.ops[i].ret_us {
            self.required.insert((ret, i));
            self.fixed_left += usize::from(!self.floating(i));
        }
        true
    }

    /// Whether candidate `i` is interchangeable with one accepted at the
    /// top node already.
    fn twin(&self, i: usize) -> bool {
        let top = self.stack.last().expect("the root frame stays");
        top.accepted.iter().any(|&j| {
            self.ops[j].ret_us == self.ops[i].ret_us
                && self.model.interchangeable(&self.ops[j].op, &self.ops[i].op)
        })
    }

    fn run(mut self, budget_steps: u64) -> Outcome<M::State> {
        let mut steps = 0;
        loop {
            if self.required.is_empty() {
                let order = self.order();
                return Outcome {
                    verdict: Verdict::Linearizable { order },
                    steps,
                };
            }
            let top = self.stack.last_mut().expect("the root frame stays");
            let Some(&i) = top.candidates.get(top.next) else {
                if !self.leave() {
                    let (longest_prefix, state, stuck) =
                        self.deepest.take().expect("set on leaving");
                    let verdict = Verdict::NotLinearizable {
                        longest_prefix,
                        state,
                        stuck,
                    };
                    return Outcome { verdict, steps };
                }
                continue;
            };
            top.next += 1;
            let Ok(chain) = self.lazy_rule(i) else {
                continue;
            };
            if self.twin(i) {
                continue;
            }
            if steps == budget_steps {
                return Outcome {
                    verdict: Verdict::BudgetExhausted,
                    steps,
                };
            }
            steps += 1;
            let floating = self.floating(i);
            let top = self.stack.last_mut().expect("the root frame stays");
            match self.model.step(&self.state, &self.ops[i].op) {
                Some(after) => {
                    top.accepted.push(i);
                    self.enter(i, after, chain);
                }
                None if !floating => top.refused.push(i),
                None => {}
            }
        }
    }
}

/// Searches for a linearization of `ops` under `model`: the lazy phase,
/// then, unless it found one, the complete phase.
pub fn search<M: Model>(model: &M, ops: &[Operation<M::Op>], limits: Limits) -> Outcome<M::State> {
    let mut lazy_steps = 0;
    let floating = ops
        .iter()
        .any(|o| o.ret_us.is_none_or(|ret| ret >= limits.floating_from_us));
    if floating {
        let lazy =
            Search::new(model, ops, Phase::Lazy, limits.floating_from_us).run(limits.budget_steps);
        if let Verdict::Linearizable { .. } = lazy.verdict {
            return lazy;
        }
        lazy_steps = lazy.steps;
    }
    let complete =
        Search::new(model, ops, Phase::Complete, limits.floating_from_us).run(limits.budget_steps);
    Outcome {
        verdict: complete.verdict,
        steps: lazy_steps + complete.steps,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A register: `Write(v)` sets it, `Read(v)` observes `v`.
    struct Register;

    #[derive(Clone, Copy, Debug)]
    enum RegOp {
        Write(u8),
        Read(u8),
    }

    impl Model for Register {
        type Op = RegOp;
        type State = u8;
        fn init(&self) -> u8 {
            0
        }
        fn step(&self, state: &u8, op: &RegOp) -> Option<u8> {
            match *op {
                RegOp::Write(v) => Some(v),
                RegOp::Read(v) => (v == *state).then_some(*state),
            }
        }
        fn read_only(&self, op: &RegOp) -> bool {
            matches!(op, RegOp::Read(_))
        }
    }

    fn limits(budget_steps: u64) -> Limits {
        Limits {
            budget_steps,
            floating_from_us: u64::MAX,
        }
    }

    fn op(call_us: u64, ret_us: Option<u64>, op: RegOp) -> Operation<RegOp> {
        Operation {
            call_us,
            ret_us,
            op,
        }
    }

    #[test]
    fn concurrent_write_may_be_seen_or_not() {
        let ops = [
            op(0, Some(10), RegOp::Write(1)),
            op(1, Some(2), RegOp::Read(0)),
            op(3, Some(4), RegOp::Read(1)),
        ];
        let out = search(&Register, &ops, limits(1_000));
        assert_eq!(
            out.verdict,
            Verdict::Linearizable {
                order: vec![1, 0, 2]
            }
        );
    }

    #[test]
    fn a_read_cannot_go_back_in_time() {
        let ops = [
            op(0, Some(1), RegOp::Write(1)),
            op(2, Some(3), RegOp::Write(2)),
            op(4, Some(5), RegOp::Read(1)),
        ];
        match search(&Register, &ops, limits(1_000)).verdict {
            Verdict::NotLinearizable {
                longest_prefix,
                stuck,
                ..
            } => {
                assert_eq!(longest_prefix, vec![0, 1]);
                assert_eq!(stuck, 2);
            }
            other => panic!("expected a violation, got {other:?}"),
        }
    }

    #[test]
    fn an_open_op_may_apply_late_or_never() {
        // The open write may land between the reads, or never.
        let late = [
            op(0, None, RegOp::Write(7)),
            op(1, Some(2), RegOp::Read(0)),
            op(3, Some(4), RegOp::Read(7)),
        ];
        assert!(matches!(
            search(&Register, &late, limits(1_000)).verdict,
            Verdict::Linearizable { .. }
        ));
        let never = [op(0, None, RegOp::Write(7)), op(1, Some(2), RegOp::Read(0))];
        assert_eq!(
            search(&Register, &never, limits(1_000)).verdict,
            Verdict::Linearizable { order: vec![1] }
        );
        // But it cannot be undone once seen.
        let undone = [
            op(0, None, RegOp::Write(7)),
            op(1, Some(2), RegOp::Read(7)),
            op(3, Some(4), RegOp::Read(0)),
        ];
        assert!(matches!(
            search(&Register, &undone, limits(1_000)).verdict,
            Verdict::NotLinearizable { .. }
        ));
    }

    #[test]
    fn the_budget_bounds_the_search() {
        let ops = [
            op(0, Some(1), RegOp::Write(1)),
            op(2, Some(3), RegOp::Read(2)),
        ];
        let out = search(&Register, &ops, limits(1));
        assert_eq!(out.verdict, Verdict::BudgetExhausted);
        assert_eq!(out.steps, 1);
    }

    #[test]
    fn reads_that_fit_are_placed_first_without_a_search_over_them() {
        // A write answered early, and many reads of the old value answered
        // late: the reads must all come first. Tried in return order, the
        // write goes first and every read fails after it, once per read
        // placed so far (quadratic); a read that fits is placed at once.
        let reads = 300;
        let mut ops = vec![op(0, Some(10), RegOp::Write(1))];
        ops.extend((0..reads).map(|k| op(0, Some(100 + k), RegOp::Read(0))));
        let out = search(&Register, &ops, limits(2 * reads));
        assert!(
            matches!(out.verdict, Verdict::Linearizable { .. }),
            "{out:?}"
        );
        assert!(out.steps <= reads + 1, "{} steps", out.steps);
        // And a read that does not fit still fails the history.
        ops.push(op(200, Some(500), RegOp::Read(2)));
        assert!(matches!(
            search(&Register, &ops, limits(10 * reads)).verdict,
            Verdict::NotLinearizable { .. }
        ));
    }

    #[test]
    fn an_empty_history_is_linearizable() {
        let out = search(&Register, &[], limits(0));
        assert_eq!(out.verdict, Verdict::Linearizable { order: vec![] });
    }
}
