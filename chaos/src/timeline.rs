//! From recorded entries to *logical operations*: the unit every check
//! works on.
//!
//! An [`Attempt`] is one invoke and its completion, paired by process (a
//! process has one attempt outstanding at a time). A [`LogicalOp`] is every
//! attempt of one request id: the server applies a request id at most once
//! (design §1.3), so its retries are one operation whose effect, if any,
//! happened once, somewhere between the first invoke and the first
//! definite answer. Reads have no request id; each read attempt is its own
//! logical operation.
//!
//! The outcome of a logical operation ([`Outcome`]) is taken from its
//! attempts: the earliest `Ok`, else the earliest decided refusal, else
//! `NotApplied` if every attempt was refused before the log, else
//! `Unknown`. Whether the attempts *agree* is an at-most-once question, left
//! to [`crate::check::duplicate`].

use crate::codes::{classify, CodeClass};
use crate::history::{Entry, FaultPhase, Op, OpResult};
use std::collections::BTreeMap;

/// A history that cannot be interpreted: the harness recorded something
/// impossible. Reported with the 1-based line number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("history line {line}: {why}")]
pub struct TimelineError {
    /// The offending line.
    pub line: usize,
    /// What is impossible about it.
    pub why: String,
}

/// How one attempt ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AttemptEnd {
    /// Success.
    Ok {
        /// When the answer arrived.
        at_us: u64,
        /// The answer.
        result: OpResult,
    },
    /// An error status.
    Refused {
        /// When the answer arrived.
        at_us: u64,
        /// gRPC code name.
        code: String,
        /// `ErrorInfo.reason`.
        reason: String,
        /// `ErrorInfo.metadata`.
        metadata: BTreeMap<String, String>,
        /// What the code says about the effect.
        class: CodeClass,
    },
    /// No answer; `at_us` is `None` when the history ended first.
    Unknown {
        /// When the client gave up.
        at_us: Option<u64>,
    },
}

/// One invoke and its completion.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attempt {
    /// 1-based line of the invoke.
    pub line: usize,
    /// The client process.
    pub process: u64,
    /// When it was sent.
    pub invoke_us: u64,
    /// How it ended.
    pub end: AttemptEnd,
}

/// What a logical operation did, as far as its answers tell.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Applied, with this answer; took effect before `at_us`.
    Ok {
        /// The answer.
        result: OpResult,
        /// The earliest time an attempt was answered `Ok`.
        at_us: u64,
    },
    /// Decided by the ledger as a refusal; changed nothing.
    Refused {
        /// gRPC code name.
        code: String,
        /// `ErrorInfo.reason`.
        reason: String,
        /// `ErrorInfo.metadata`.
        metadata: BTreeMap<String, String>,
        /// The earliest time an attempt was answered so.
        at_us: u64,
    },
    /// Every attempt was refused before the log: no effect, no evidence.
    NotApplied,
    /// No definite answer: applied once or never, at any time after the
    /// first invoke (possibly after the history ends).
    Unknown,
}

/// All attempts of one request id (or one read).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogicalOp {
    /// The request body (every attempt's is the same).
    pub op: Op,
    /// Attempts in invoke order.
    pub attempts: Vec<Attempt>,
    /// Derived from the attempts.
    pub outcome: Outcome,
}

/// A fault the harness injected or healed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fault {
    /// When.
    pub time_us: u64,
    /// What.
    pub kind: String,
    /// Where.
    pub target: String,
    /// Start or end.
    pub phase: FaultPhase,
}

/// A history, interpreted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Timeline {
    /// Logical operations in order of first invoke.
    pub ops: Vec<LogicalOp>,
    /// Faults in time order.
    pub faults: Vec<Fault>,
    /// Number of invoke entries (attempts).
    pub invocations: usize,
    /// The latest time stamp in the history.
    pub end_us: u64,
}

impl LogicalOp {
    /// When the first attempt was sent.
    pub fn invoke_us(&self) -> u64 {
        self.attempts[0].invoke_us
    }

    /// 1-based history line of the first attempt.
    pub fn line(&self) -> usize {
        self.attempts[0].line
    }

    /// The answer, if the operation succeeded.
    pub fn ok_result(&self) -> Option<&OpResult> {
        match &self.outcome {
            Outcome::Ok { result, .. } => Some(result),
            _ => None,
        }
    }

    /// A short description for reports: name, id, line and times.
    pub fn describe(&self) -> String {
        let id = self
            .op
            .request_id()
            .map(|id| format!(" {id}"))
            .unwrap_or_default();
        let outcome = match &self.outcome {
            Outcome::Ok { at_us, .. } => format!("ok at {at_us} us"),
            Outcome::Refused { reason, at_us, .. } => format!("refused {reason} at {at_us} us"),
            Outcome::NotApplied => "not applied".into(),
            Outcome::Unknown => "unknown".into(),
        };
        format!(
            "{}{id} (line {}, invoked at {} us, {outcome})",
            self.op.name(),
            self.line(),
            self.invoke_us()
        )
    }
}

fn derive_outcome(attempts: &[Attempt]) -> Outcome {
    let earliest_ok = attempts
        .iter()
        .filter_map(|a| match &a.end {
            AttemptEnd::Ok { at_us, result } => Some((*at_us, result)),
            _ => None,
        })
        .min_by_key(|(at, _)| *at);
    if let Some((at_us, result)) = earliest_ok {
        return Outcome::Ok {
            result: result.clone(),
            at_us,
        };
    }
    let earliest_decided = attempts
        .iter()
        .filter_map(|a| match &a.end {
            AttemptEnd::Refused {
                at_us,
                code,
                reason,
                metadata,
                class: CodeClass::Decided,
            } => Some((*at_us, code, reason, metadata)),
            _ => None,
        })
        .min_by_key(|(at, ..)| *at);
    if let Some((at_us, code, reason, metadata)) = earliest_decided {
        return Outcome::Refused {
            code: code.clone(),
            reason: reason.clone(),
            metadata: metadata.clone(),
            at_us,
        };
    }
    let open = attempts.iter().any(|a| match &a.end {
        AttemptEnd::Unknown { .. } => true,
        AttemptEnd::Refused { class, .. } => *class == CodeClass::Open,
        AttemptEnd::Ok { .. } => false,
    });
    if open {
        Outcome::Unknown
    } else {
        Outcome::NotApplied
    }
}

/// An attempt being assembled: its op until its completion arrives.
struct Pending {
    line: usize,
    invoke_us: u64,
    op: Op,
}

/// A completion entry as `(process, time, how the attempt ended)`; `None`
/// for invokes and faults.
fn completion(entry: &Entry) -> Option<(u64, u64, AttemptEnd)> {
    Some(match entry {
        Entry::Ok {
            process,
            time_us,
            result,
        } => {
            let end = AttemptEnd::Ok {
                at_us: *time_us,
                result: result.clone(),
            };
            (*process, *time_us, end)
        }
        Entry::Refused {
            process,
            time_us,
            code,
            reason,
            metadata,
        } => {
            let end = AttemptEnd::Refused {
                at_us: *time_us,
                code: code.clone(),
                reason: reason.clone(),
                metadata: metadata.clone(),
                class: classify(code, metadata),
            };
            (*process, *time_us, end)
        }
        Entry::Unknown {
            process, time_us, ..
        } => {
            let end = AttemptEnd::Unknown {
                at_us: Some(*time_us),
            };
            (*process, *time_us, end)
        }
        Entry::Invoke { .. } | Entry::Fault { .. } => return None,
    })
}

/// Pairs invokes with completions by process.
#[derive(Default)]
struct Pairing {
    outstanding: BTreeMap<u64, Pending>,
    attempts: Vec<(Op, Attempt)>,
}

impl Pairing {
    fn invoke(&mut self, line: usize, process: u64, time_us: u64, op: &Op) -> Result<(), String> {
        if let Some(p) = self.outstanding.get(&process) {
            return Err(format!(
                "process {process} invokes while its attempt from line {} is outstanding",
                p.line
            ));
        }
        let pending = Pending {
            line,
            invoke_us: time_us,
            op: op.clone(),
        };
        self.outstanding.insert(process, pending);
        Ok(())
    }

    fn complete(&mut self, process: u64, time_us: u64, end: AttemptEnd) -> Result<(), String> {
        let Some(pending) = self.outstanding.remove(&process) else {
            return Err(format!(
                "completion for process {process}, which has no outstanding invoke"
            ));
        };
        if time_us < pending.invoke_us {
            return Err(format!(
                "completes at {time_us} us, before its invoke at {} us (line {})",
                pending.invoke_us, pending.line
            ));
        }
        if let AttemptEnd::Ok { result, .. } = &end {
            if !pending.op.accepts(result) {
                return Err(format!(
                    "a {} answered with a result of another kind (invoke on line {})",
                    pending.op.name(),
                    pending.line
                ));
            }
        }
        let attempt = attempt(&pending, process, end);
        self.attempts.push((pending.op, attempt));
        Ok(())
    }

    /// Every attempt, those still outstanding as unknown.
    fn finish(mut self) -> Vec<(Op, Attempt)> {
        for (process, pending) in std::mem::take(&mut self.outstanding) {
            let attempt = attempt(&pending, process, AttemptEnd::Unknown { at_us: None });
            self.attempts.push((pending.op, attempt));
        }
        self.attempts
    }
}

/// Pairs invokes with completions and merges attempts by request id.
pub fn build(entries: &[Entry]) -> Result<Timeline, TimelineError> {
    let mut pairing = Pairing::default();
    let mut faults = Vec::new();
    let mut invocations = 0;
    let mut end_us = 0;
    for (i, entry) in entries.iter().enumerate() {
        let line = i + 1;
        end_us = end_us.max(entry.time_us());
        let paired = match entry {
            Entry::Invoke {
                process,
                time_us,
                op,
            } => {
                invocations += 1;
                pairing.invoke(line, *process, *time_us, op)
            }
            Entry::Fault {
                time_us,
                kind,
                target,
                phase,
            } => {
                faults.push(Fault {
                    time_us: *time_us,
                    kind: kind.clone(),
                    target: target.clone(),
                    phase: *phase,
                });
                Ok(())
            }
            _ => match completion(entry) {
                Some((process, time_us, end)) => pairing.complete(process, time_us, end),
                None => Ok(()),
            },
        };
        paired.map_err(|why| TimelineError { line, why })?;
    }
    let ops = merge(pairing.finish())?;
    faults.sort_by_key(|f| f.time_us);
    Ok(Timeline {
        ops,
        faults,
        invocations,
        end_us,
    })
}

fn attempt(pending: &Pending, process: u64, end: AttemptEnd) -> Attempt {
    Attempt {
        line: pending.line,
        process,
        invoke_us: pending.invoke_us,
        end,
    }
}

/// Groups attempts by request id (reads stay alone), in invoke order.
fn merge(mut attempts: Vec<(Op, Attempt)>) -> Result<Vec<LogicalOp>, TimelineError> {
    attempts.sort_by_key(|(_, a)| (a.invoke_us, a.line));
    let mut ops: Vec<LogicalOp> = Vec::new();
    let mut by_request: BTreeMap<String, usize> = BTreeMap::new();
    for (op, attempt) in attempts {
        if let Some(id) = op.request_id() {
            if let Some(&k) = by_request.get(id) {
                let first = &mut ops[k];
                if first.op != op {
                    return Err(TimelineError {
                        line: attempt.line,
                        why: format!(
                            "request id {id} reused with another body (first used on line {})",
                            first.line()
                        ),
                    });
                }
                first.attempts.push(attempt);
                continue;
            }
            by_request.insert(id.to_string(), ops.len());
        }
        ops.push(LogicalOp {
            op,
            attempts: vec![attempt],
            outcome: Outcome::Unknown,
        });
    }
    for op in &mut ops {
        op.outcome = derive_outcome(&op.attempts);
    }
    Ok(ops)
}
