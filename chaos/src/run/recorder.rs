//! The history of a run as it happens: every invoke, completion and fault,
//! one JSON line each, stamped with microseconds of one monotonic clock
//! shared by every client task. The stamp is taken under the writer's lock,
//! so the file is in time order.

use holdfast_chaos::history::{Entry, FaultPhase, Op, OpResult};
use holdfast_chaos::jsonl::JsonlWriter;
use holdfast_client::Error;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::BufWriter;
use std::path::Path;
use std::sync::Mutex;
use std::time::Instant;

/// Appends the run's history to a file.
pub struct Recorder {
    start: Instant,
    out: Mutex<JsonlWriter<BufWriter<File>>>,
}

/// What the history says about one attempt's end.
pub enum Completion {
    /// Succeeded.
    Ok(OpResult),
    /// Answered with a status.
    Refused {
        code: &'static str,
        reason: String,
        metadata: BTreeMap<String, String>,
    },
    /// No definite answer.
    Unknown(String),
}

impl Recorder {
    /// A recorder writing to `path` (truncated).
    pub fn create(path: &Path) -> std::io::Result<Recorder> {
        Ok(Recorder {
            start: Instant::now(),
            out: Mutex::new(JsonlWriter::new(BufWriter::new(File::create(path)?))),
        })
    }

    /// Microseconds since the run started: the history's clock, for files
    /// kept beside it (`leaders.jsonl`).
    pub fn now_us(&self) -> u64 {
        self.start.elapsed().as_micros() as u64
    }

    fn append(&self, make: impl FnOnce(u64) -> Entry) {
        let mut out = self.out.lock().unwrap_or_else(|p| p.into_inner());
        let entry = make(self.start.elapsed().as_micros() as u64);
        if let Err(e) = out.append(&entry) {
            panic!("cannot write the history: {e}");
        }
    }

    /// A process sends `op`.
    pub fn invoke(&self, process: u64, op: &Op) {
        self.append(|time_us| Entry::Invoke {
            process,
            time_us,
            op: op.clone(),
        });
    }

    /// The attempt of `process` ended.
    pub fn complete(&self, process: u64, completion: Completion) {
        self.append(|time_us| match completion {
            Completion::Ok(result) => Entry::Ok {
                process,
                time_us,
                result,
            },
            Completion::Refused {
                code,
                reason,
                metadata,
            } => Entry::Refused {
                process,
                time_us,
                code: code.to_string(),
                reason,
                metadata,
            },
            Completion::Unknown(error) => Entry::Unknown {
                process,
                time_us,
                error,
            },
        });
    }

    /// A fault starts or ends.
    pub fn fault(&self, kind: &str, target: &str, phase: FaultPhase) {
        self.append(|time_us| Entry::Fault {
            time_us,
            kind: kind.to_string(),
            target: target.to_string(),
            phase,
        });
    }

    /// Flushes the file.
    pub fn flush(&self) -> std::io::Result<()> {
        self.out.lock().unwrap_or_else(|p| p.into_inner()).flush()
    }
}

/// How the history records a client error. Errors the client returns after
/// retrying (`UNAVAILABLE`, `ABORTED`, `RESOURCE_EXHAUSTED`, a deadline)
/// are *unknown*: an earlier attempt of the same call may have applied, so
/// even a "not applied" code of the last attempt proves nothing.
pub fn completion_of(error: &Error) -> Completion {
    let refused = |code: &'static str, metadata: BTreeMap<String, String>| Completion::Refused {
        code,
        reason: error.reason().to_string(),
        metadata,
    };
    match error {
        Error::OutOfStock { line, .. } => {
            let mut metadata = BTreeMap::new();
            if let Some(line) = line {
                metadata.insert("line".to_string(), line.to_string());
            }
            refused("FAILED_PRECONDITION", metadata)
        }
        Error::ReservationNotPending {
            part: Some(part), ..
        } => {
            // The part of a cross-shard reservation that was not pending;
            // the others did what the call asked (the checker needs which).
            let metadata = BTreeMap::from([("part".to_string(), part.clone())]);
            refused("FAILED_PRECONDITION", metadata)
        }
        Error::LimitExceeded { .. }
        | Error::ReservationNotPending { .. }
        | Error::OnHandMismatch { .. }
        | Error::HeldExceedsStock { .. } => refused("FAILED_PRECONDITION", BTreeMap::new()),
        Error::ReservationNotFound { .. } | Error::LocationNotFound { .. } => {
            refused("NOT_FOUND", BTreeMap::new())
        }
        Error::RequestIdMismatch { .. } => refused("ALREADY_EXISTS", BTreeMap::new()),
        Error::InvalidArgument { .. } => refused("INVALID_ARGUMENT", BTreeMap::new()),
        _ => Completion::Unknown(error.to_string()),
    }
}
