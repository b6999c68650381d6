//! Typed errors, decoded once from a gRPC status: its code, and the
//! `google.rpc.ErrorInfo` detail every Holdfast error carries (reason and
//! metadata, `server/src/status.rs`). One variant per refusal of the
//! engine, plus the conditions of the cluster and of the call itself.
//!
//! Decoding never fails: a status without details, or with a reason this
//! version does not know, becomes [`Error::Unavailable`] (transport
//! trouble) or [`Error::Server`] with its code, reason and message.

use serde::Serialize;
use std::collections::HashMap;
use tonic::{Code, Status};
use tonic_types::StatusExt;

/// `ErrorInfo.domain` of Holdfast's errors.
pub const ERROR_DOMAIN: &str = "holdfast.dev";

/// What went wrong with a call. `reason()` gives the stable machine name
/// (the server's `ErrorInfo.reason` where there is one); serialised, the
/// variant appears as `"kind": "OUT_OF_STOCK"` and so on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize)]
#[serde(tag = "kind", rename_all = "SCREAMING_SNAKE_CASE")]
#[non_exhaustive]
pub enum Error {
    /// A field of the request is out of bounds (`INVALID_ARGUMENT`). Not
    /// remembered under the request id: fix the field and resend, with the
    /// same id if you like.
    #[error("invalid argument: {message}")]
    InvalidArgument {
        /// The field, as the API names it (`lines[0].quantity`, `ttl_ms`).
        field: String,
        /// The server's explanation.
        message: String,
    },
    /// Not enough units to hold (`FAILED_PRECONDITION` / `OUT_OF_STOCK`).
    #[error("out of stock: {requested} of {sku} requested, {available} available at {} (as of log index {as_of_index})", location.as_deref().unwrap_or("any location"))]
    OutOfStock {
        /// The SKU of the short line.
        sku: String,
        /// The location asked for or tried; `None` when any location was.
        location: Option<String>,
        /// Index of the short line in the request.
        line: Option<u32>,
        /// Units the line asked for.
        requested: i64,
        /// Units that were available.
        available: i64,
        /// Raft log index of the state the answer comes from.
        as_of_index: u64,
    },
    /// A per-customer limit of the SKU would be exceeded (`LIMIT_EXCEEDED`).
    #[error("customer limit of {limit} for {sku} exceeded ({used} used, {requested} requested)")]
    LimitExceeded {
        /// The SKU.
        sku: String,
        /// Index of the line in the request.
        line: Option<u32>,
        /// The limit.
        limit: u64,
        /// Units the customer holds or bought under it.
        used: u64,
        /// Units asked for.
        requested: i64,
    },
    /// The reservation was already confirmed, released or expired
    /// (`RESERVATION_NOT_PENDING`).
    #[error("reservation is {state}, not pending{}", part.as_ref().map(|p| format!(" (part {p}; the other parts may have acted)")).unwrap_or_default())]
    ReservationNotPending {
        /// `CONFIRMED`, `RELEASED` or `EXPIRED`.
        state: String,
        /// For a cross-shard reservation, the part that is not pending
        /// (`"5-40"`); the other parts did what the call asked.
        part: Option<String>,
    },
    /// No such reservation, or one resolved long ago and forgotten
    /// (`NOT_FOUND` / `RESERVATION_NOT_FOUND`).
    #[error("reservation not found: {message}")]
    ReservationNotFound {
        /// The server's explanation.
        message: String,
    },
    /// A named location does not exist (`NOT_FOUND` / `LOCATION_NOT_FOUND`).
    #[error("location not found: {message}")]
    LocationNotFound {
        /// The request line that named it, if any.
        line: Option<u32>,
        /// The server's explanation.
        message: String,
    },
    /// The request id was used before with a different body
    /// (`ALREADY_EXISTS` / `REQUEST_ID_MISMATCH`).
    #[error("request id {request_id:?} was already used with a different request body")]
    RequestIdMismatch {
        /// The request id of the call.
        request_id: String,
    },
    /// `AdjustStock`'s compare-and-set failed (`ON_HAND_MISMATCH`).
    #[error("expected on hand {expected}, but on hand is {actual}")]
    OnHandMismatch {
        /// What the request expected.
        expected: i64,
        /// What the row has.
        actual: i64,
    },
    /// The change would leave fewer units than are held
    /// (`HELD_EXCEEDS_STOCK`): release holds first.
    #[error("{held} units are held but the change would leave a supply of {supply}")]
    HeldExceedsStock {
        /// Units held on the row.
        held: i64,
        /// What the row could deliver after the change.
        supply: i64,
    },
    /// No node could serve the call: no leader yet, a node stopping or
    /// unreachable (`UNAVAILABLE`). Retried by the client until the
    /// deadline; returned when retries are off or exhausted.
    #[error("unavailable: {message}")]
    Unavailable {
        /// The shard concerned, when the server said.
        shard: Option<u32>,
        /// The shard leader's address, when the server knew it.
        leader_hint: Option<String>,
        /// The server's or the transport's explanation.
        message: String,
    },
    /// A proposal was lost to a leader change (`ABORTED`); retried by the
    /// client with the same request id.
    #[error("aborted: {message}")]
    Aborted {
        /// The shard concerned.
        shard: Option<u32>,
        /// The server's explanation.
        message: String,
    },
    /// A node refused work to protect itself (`RESOURCE_EXHAUSTED`);
    /// retried by the client after a pause.
    #[error("resource exhausted: {message}")]
    ResourceExhausted {
        /// The server's explanation.
        message: String,
    },
    /// The call's deadline passed before any attempt succeeded. A mutating
    /// call may or may not have applied: call again with the same
    /// `request_id` to learn which.
    #[error("deadline exceeded after {attempts} attempt(s) in {elapsed_ms} ms{}", last_error.as_ref().map(|e| format!("; last error: {e}")).unwrap_or_default())]
    DeadlineExceeded {
        /// Attempts made.
        attempts: u32,
        /// Time spent, ms.
        elapsed_ms: u64,
        /// The call's request id (mutating calls), to retry it later.
        request_id: Option<String>,
        /// What the last attempt ended with, if it ended.
        last_error: Option<Box<Error>>,
    },
    /// A node address the client cannot use.
    #[error("invalid endpoint {endpoint:?}: {message}")]
    InvalidEndpoint {
        /// The address.
        endpoint: String,
        /// What is wrong with it.
        message: String,
    },
    /// Any other status (`INTERNAL`, `UNIMPLEMENTED`, an unknown reason of
    /// a newer server...).
    #[error("server error {code}{}: {message}", reason.as_ref().map(|r| format!(" ({r})")).unwrap_or_default())]
    Server {
        /// The gRPC code's name, e.g. `INTERNAL`.
        code: String,
        /// `ErrorInfo.reason`, if any.
        reason: Option<String>,
        /// The status message.
        message: String,
    },
}

/// What the retry loop does after an attempt failed with a status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Disposition {
    /// Return the error: a decision of the ledger, or a bad request.
    Final,
    /// The shard's leader is at this address: go there.
    Redirect(String),
    /// The node answered but cannot serve the shard (no leader): pause,
    /// then try another node.
    OtherNode,
    /// The node did not answer properly (connection refused or reset, it is
    /// stopping, the attempt timed out): forget it as a leader, pause, try
    /// another node.
    NodeDown,
    /// The node is fine but the attempt was lost or shed (`ABORTED`,
    /// `RESOURCE_EXHAUSTED`): pause, then retry as before.
    Again,
}

impl Error {
    /// The stable machine name of the error (the server's
    /// `ErrorInfo.reason` where there is one).
    pub fn reason(&self) -> &str {
        match self {
            Error::InvalidArgument { .. } => "INVALID_ARGUMENT",
            Error::OutOfStock { .. } => "OUT_OF_STOCK",
            Error::LimitExceeded { .. } => "LIMIT_EXCEEDED",
            Error::ReservationNotPending { .. } => "RESERVATION_NOT_PENDING",
            Error::ReservationNotFound { .. } => "RESERVATION_NOT_FOUND",
            Error::LocationNotFound { .. } => "LOCATION_NOT_FOUND",
            Error::RequestIdMismatch { .. } => "REQUEST_ID_MISMATCH",
            Error::OnHandMismatch { .. } => "ON_HAND_MISMATCH",
            Error::HeldExceedsStock { .. } => "HELD_EXCEEDS_STOCK",
            Error::Unavailable { .. } => "UNAVAILABLE",
            Error::Aborted { .. } => "ABORTED",
            Error::ResourceExhausted { .. } => "RESOURCE_EXHAUSTED",
            Error::DeadlineExceeded { .. } => "DEADLINE_EXCEEDED",
            Error::InvalidEndpoint { .. } => "INVALID_ENDPOINT",
            Error::Server { .. } => "SERVER",
        }
    }

    /// Whether calling again with the same request id may succeed without
    /// any change to the request or the ledger.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Error::Unavailable { .. }
                | Error::Aborted { .. }
                | Error::ResourceExhausted { .. }
                | Error::DeadlineExceeded { .. }
        )
    }

    /// Decodes a status answered to a call whose request id is
    /// `request_id` (mutating calls; named in `RequestIdMismatch`).
    /// The typed error of one failed `ReserveBatch` item: the same as a
    /// single `Reserve` answered with that status would give.
    pub fn from_item(item: &crate::pb::inventory::ItemError, request_id: Option<&str>) -> Error {
        let status = Status::with_error_details(
            Code::from_i32(item.code),
            item.message.clone(),
            tonic_types::ErrorDetails::with_error_info(
                item.reason.clone(),
                ERROR_DOMAIN,
                item.metadata
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect::<std::collections::HashMap<_, _>>(),
            ),
        );
        Error::from_status(&status, request_id)
    }

    /// Decodes a status from a node into the typed error.
    pub fn from_status(status: &Status, request_id: Option<&str>) -> Error {
        let info = status
            .get_details_error_info()
            .filter(|i| i.domain == ERROR_DOMAIN);
        let Some(info) = info else {
            return Self::without_details(status);
        };
        let meta = Meta(&info.metadata);
        let message = status.message().to_string();
        match info.reason.as_str() {
            "INVALID_ARGUMENT" => Error::InvalidArgument {
                field: meta.text("field"),
                message,
            },
            "OUT_OF_STOCK" => Error::OutOfStock {
                sku: meta.text("sku"),
                location: meta.optional("location"),
                line: meta.number("line"),
                requested: meta.number("requested").unwrap_or(0),
                available: meta.number("available").unwrap_or(0),
                as_of_index: meta.number("as_of_index").unwrap_or(0),
            },
            "LIMIT_EXCEEDED" => Error::LimitExceeded {
                sku: meta.text("sku"),
                line: meta.number("line"),
                limit: meta.number("limit").unwrap_or(0),
                used: meta.number("used").unwrap_or(0),
                requested: meta.number("requested").unwrap_or(0),
            },
            "RESERVATION_NOT_PENDING" => Error::ReservationNotPending {
                state: meta.text("state"),
                part: meta.optional("part"),
            },
            "RESERVATION_NOT_FOUND" => Error::ReservationNotFound { message },
            "LOCATION_NOT_FOUND" => Error::LocationNotFound {
                line: meta.number("line"),
                message,
            },
            "REQUEST_ID_MISMATCH" => Error::RequestIdMismatch {
                request_id: request_id.unwrap_or_default().to_string(),
            },
            "ON_HAND_MISMATCH" => Error::OnHandMismatch {
                expected: meta.number("expected").unwrap_or(0),
                actual: meta.number("actual").unwrap_or(0),
            },
            "HELD_EXCEEDS_STOCK" => Error::HeldExceedsStock {
                held: meta.number("held").unwrap_or(0),
                supply: meta.number("supply").unwrap_or(0),
            },
            "NOT_LEADER" | "NO_LEADER" => Error::Unavailable {
                shard: meta.number("shard"),
                leader_hint: meta.optional("leader_hint"),
                message,
            },
            "PROPOSAL_DROPPED" => Error::Aborted {
                shard: meta.number("shard"),
                message,
            },
            other => Error::Server {
                code: code_name(status.code()),
                reason: Some(other.to_string()),
                message,
            },
        }
    }

    fn without_details(status: &Status) -> Error {
        let message = status.message().to_string();
        match status.code() {
            Code::Unavailable => Error::Unavailable {
                shard: None,
                leader_hint: None,
                message,
            },
            Code::Aborted => Error::Aborted {
                shard: None,
                message,
            },
            Code::ResourceExhausted => Error::ResourceExhausted { message },
            code => Error::Server {
                code: code_name(code),
                reason: None,
                message,
            },
        }
    }
}

/// How the retry loop treats `status` (already decoded as `error`).
///
/// Every mutating call carries a request id and the ledger answers a retry
/// with the first answer, so any failure that is not a decision of the
/// ledger may be retried safely, including those where the first attempt
/// may have applied (a reset connection, a server-side timeout).
pub(crate) fn disposition(status: &Status, error: &Error) -> Disposition {
    match error {
        Error::Unavailable {
            leader_hint: Some(hint),
            ..
        } => Disposition::Redirect(hint.clone()),
        Error::Unavailable {
            shard: Some(_),
            leader_hint: None,
            ..
        } => Disposition::OtherNode,
        // No details: the transport failed or the node is stopping.
        Error::Unavailable { shard: None, .. } => Disposition::NodeDown,
        Error::Aborted { .. } | Error::ResourceExhausted { .. } => Disposition::Again,
        Error::Server { reason: None, .. } => match status.code() {
            // A reset stream or connection (tonic reports h2 errors as
            // UNKNOWN or CANCELLED), or a server-side timeout such as a
            // linearizable read whose read index did not arrive in time.
            Code::Unknown | Code::Cancelled | Code::DeadlineExceeded => Disposition::NodeDown,
            _ => Disposition::Final,
        },
        _ => Disposition::Final,
    }
}

/// Reason of a hot-SKU admission refusal (`RESOURCE_EXHAUSTED`): the node
/// refused the request before proposing it.
pub const ADMISSION_LIMIT: &str = "ADMISSION_LIMIT";

/// Whether `status` says the request was refused before it was proposed
/// (so its id still has no answer in the ledger).
pub(crate) fn not_proposed(status: &Status) -> bool {
    status.code() == Code::ResourceExhausted
        && status
            .get_details_error_info()
            .is_some_and(|info| info.reason == ADMISSION_LIMIT)
}

/// `ErrorInfo.metadata`, read leniently: a missing or malformed value is
/// `None` (the server is a peer on the network, not trusted to be well
/// formed, and a decoding error must not hide the error it describes).
struct Meta<'a>(&'a HashMap<String, String>);

impl Meta<'_> {
    fn optional(&self, key: &str) -> Option<String> {
        self.0.get(key).filter(|v| !v.is_empty()).cloned()
    }

    fn text(&self, key: &str) -> String {
        self.0.get(key).cloned().unwrap_or_default()
    }

    fn number<T: std::str::FromStr>(&self, key: &str) -> Option<T> {
        self.0.get(key).and_then(|v| v.parse().ok())
    }
}

/// The canonical name of a gRPC code (`FAILED_PRECONDITION`).
pub fn code_name(code: Code) -> String {
    let name = format!("{code:?}");
    let mut out = String::with_capacity(name.len() + 4);
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic_types::ErrorDetails;

    /// A status as `server/src/status.rs` builds it.
    fn status(code: Code, message: &str, reason: &str, metadata: &[(&str, &str)]) -> Status {
        let metadata: HashMap<String, String> = metadata
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Status::with_error_details(
            code,
            message,
            ErrorDetails::with_error_info(reason, ERROR_DOMAIN, metadata),
        )
    }

    #[test]
    fn out_of_stock_keeps_every_figure() {
        let s = status(
            Code::FailedPrecondition,
            "lines[0]: 3 of SKU-1 requested, 1 available at berlin (as of log index 42)",
            "OUT_OF_STOCK",
            &[
                ("line", "0"),
                ("sku", "SKU-1"),
                ("location", "berlin"),
                ("requested", "3"),
                ("available", "1"),
                ("as_of_index", "42"),
            ],
        );
        let e = Error::from_status(&s, Some("r-1"));
        assert_eq!(
            e,
            Error::OutOfStock {
                sku: "SKU-1".into(),
                location: Some("berlin".into()),
                line: Some(0),
                requested: 3,
                available: 1,
                as_of_index: 42,
            }
        );
        assert_eq!(disposition(&s, &e), Disposition::Final);
        assert!(!e.is_retryable());
        assert_eq!(e.reason(), "OUT_OF_STOCK");
        // Any location: the server sends an empty location.
        let s = status(
            Code::FailedPrecondition,
            "",
            "OUT_OF_STOCK",
            &[("sku", "S"), ("location", ""), ("available", "0")],
        );
        assert!(matches!(
            Error::from_status(&s, None),
            Error::OutOfStock {
                location: None,
                available: 0,
                ..
            }
        ));
    }

    #[test]
    fn refusals_decode_to_their_variants() {
        let cases: Vec<(Status, Error)> = vec![
            (
                status(
                    Code::InvalidArgument,
                    "lines[0].quantity must be 1..",
                    "INVALID_ARGUMENT",
                    &[("field", "lines[0].quantity")],
                ),
                Error::InvalidArgument {
                    field: "lines[0].quantity".into(),
                    message: "lines[0].quantity must be 1..".into(),
                },
            ),
            (
                status(
                    Code::FailedPrecondition,
                    "m",
                    "RESERVATION_NOT_PENDING",
                    &[("state", "CONFIRMED")],
                ),
                Error::ReservationNotPending {
                    state: "CONFIRMED".into(),
                    part: None,
                },
            ),
            (
                status(
                    Code::FailedPrecondition,
                    "part 5-40 of 2-17+5-40: reservation is EXPIRED, not pending",
                    "RESERVATION_NOT_PENDING",
                    &[("state", "EXPIRED"), ("part", "5-40")],
                ),
                Error::ReservationNotPending {
                    state: "EXPIRED".into(),
                    part: Some("5-40".into()),
                },
            ),
            (
                status(Code::AlreadyExists, "m", "REQUEST_ID_MISMATCH", &[]),
                Error::RequestIdMismatch {
                    request_id: "r-1".into(),
                },
            ),
            (
                status(Code::NotFound, "gone", "RESERVATION_NOT_FOUND", &[]),
                Error::ReservationNotFound {
                    message: "gone".into(),
                },
            ),
            (
                status(Code::NotFound, "x", "LOCATION_NOT_FOUND", &[("line", "")]),
                Error::LocationNotFound {
                    line: None,
                    message: "x".into(),
                },
            ),
            (
                status(
                    Code::FailedPrecondition,
                    "m",
                    "LIMIT_EXCEEDED",
                    &[
                        ("line", "1"),
                        ("sku", "S"),
                        ("limit", "2"),
                        ("used", "2"),
                        ("requested", "1"),
                    ],
                ),
                Error::LimitExceeded {
                    sku: "S".into(),
                    line: Some(1),
                    limit: 2,
                    used: 2,
                    requested: 1,
                },
            ),
            (
                status(
                    Code::FailedPrecondition,
                    "m",
                    "ON_HAND_MISMATCH",
                    &[("expected", "5"), ("actual", "7")],
                ),
                Error::OnHandMismatch {
                    expected: 5,
                    actual: 7,
                },
            ),
            (
                status(
                    Code::FailedPrecondition,
                    "m",
                    "HELD_EXCEEDS_STOCK",
                    &[("held", "5"), ("supply", "-2")],
                ),
                Error::HeldExceedsStock {
                    held: 5,
                    supply: -2,
                },
            ),
        ];
        for (s, want) in cases {
            let got = Error::from_status(&s, Some("r-1"));
            assert_eq!(got, want);
            assert_eq!(disposition(&s, &got), Disposition::Final, "{got}");
        }
    }

    #[test]
    fn cluster_conditions_are_retried_the_right_way() {
        let not_leader = status(
            Code::Unavailable,
            "shard 1 is led by 127.0.0.1:7402",
            "NOT_LEADER",
            &[("shard", "1"), ("leader_hint", "127.0.0.1:7402")],
        );
        let e = Error::from_status(&not_leader, None);
        assert_eq!(
            e,
            Error::Unavailable {
                shard: Some(1),
                leader_hint: Some("127.0.0.1:7402".into()),
                message: "shard 1 is led by 127.0.0.1:7402".into(),
            }
        );
        assert_eq!(
            disposition(&not_leader, &e),
            Disposition::Redirect("127.0.0.1:7402".into())
        );
        let no_leader = status(Code::Unavailable, "none", "NO_LEADER", &[("shard", "0")]);
        let e = Error::from_status(&no_leader, None);
        assert_eq!(disposition(&no_leader, &e), Disposition::OtherNode);
        let dropped = status(Code::Aborted, "lost", "PROPOSAL_DROPPED", &[("shard", "0")]);
        let e = Error::from_status(&dropped, None);
        assert_eq!(
            e,
            Error::Aborted {
                shard: Some(0),
                message: "lost".into()
            }
        );
        assert_eq!(disposition(&dropped, &e), Disposition::Again);
        let shed = Status::resource_exhausted("node overloaded");
        let e = Error::from_status(&shed, None);
        assert!(matches!(e, Error::ResourceExhausted { .. }));
        assert_eq!(disposition(&shed, &e), Disposition::Again);
        for down in [
            Status::unavailable("tcp connect error"),
            Status::unknown("h2 protocol error: connection reset"),
            Status::cancelled("stream reset"),
            Status::deadline_exceeded("the read index did not arrive in time"),
        ] {
            let e = Error::from_status(&down, None);
            assert_eq!(disposition(&down, &e), Disposition::NodeDown, "{down:?}");
        }
    }

    #[test]
    fn unknown_or_foreign_details_do_not_hide_the_status() {
        let newer = status(Code::FailedPrecondition, "m", "SOMETHING_NEW", &[]);
        assert_eq!(
            Error::from_status(&newer, None),
            Error::Server {
                code: "FAILED_PRECONDITION".into(),
                reason: Some("SOMETHING_NEW".into()),
                message: "m".into()
            }
        );
        let foreign = Status::with_error_details(
            Code::InvalidArgument,
            "m",
            ErrorDetails::with_error_info("INVALID_ARGUMENT", "example.com", HashMap::new()),
        );
        let e = Error::from_status(&foreign, None);
        assert!(matches!(e, Error::Server { reason: None, .. }), "{e:?}");
        assert_eq!(disposition(&foreign, &e), Disposition::Final);
        // Malformed numbers read as absent, not as a panic.
        let garbled = status(
            Code::FailedPrecondition,
            "m",
            "OUT_OF_STOCK",
            &[("available", "lots"), ("as_of_index", "-1")],
        );
        assert!(matches!(
            Error::from_status(&garbled, None),
            Error::OutOfStock {
                available: 0,
                as_of_index: 0,
                ..
            }
        ));
    }

    #[test]
    fn errors_serialise_with_their_reason() {
        let e = Error::ReservationNotPending {
            state: "RELEASED".into(),
            part: None,
        };
        let json = serde_json::to_value(&e).expect("json");
        assert_eq!(json["kind"], "RESERVATION_NOT_PENDING");
        assert_eq!(json["state"], "RELEASED");
        assert_eq!(code_name(Code::FailedPrecondition), "FAILED_PRECONDITION");
        assert_eq!(code_name(Code::Ok), "OK");
    }
}
