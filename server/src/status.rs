//! The one place where engine refusals and node conditions become gRPC
//! statuses (design §6): the right code, a message that names the field or
//! row, and a `google.rpc.ErrorInfo` with a machine-readable reason.

use holdfast_engine::{InvalidArgument, Refusal, ReservationState};
use std::collections::HashMap;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// `ErrorInfo.domain` of every error this service returns.
pub const ERROR_DOMAIN: &str = "holdfast.dev";

/// Builds a status with an `ErrorInfo` detail.
pub fn status(code: Code, message: String, reason: &str, metadata: &[(&str, String)]) -> Status {
    let metadata: HashMap<String, String> = metadata
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    Status::with_error_details(
        code,
        message,
        ErrorDetails::with_error_info(reason, ERROR_DOMAIN, metadata),
    )
}

/// `INVALID_ARGUMENT` naming the field.
pub fn invalid(field: &str, why: &str) -> Status {
    status(
        Code::InvalidArgument,
        format!("{field} {why}"),
        "INVALID_ARGUMENT",
        &[("field", field.to_string())],
    )
}

/// `UNAVAILABLE` because this node cannot serve the shard now; with the
/// leader's address when known, so a client can go there directly.
pub fn unavailable(shard: u32, leader_hint: Option<&str>) -> Status {
    let mut metadata = vec![("shard", shard.to_string())];
    let (reason, message) = match leader_hint {
        Some(addr) => {
            metadata.push(("leader_hint", addr.to_string()));
            (
                "NOT_LEADER",
                format!("shard {shard} is led by {addr}; retry there with the same request id"),
            )
        }
        None => (
            "NO_LEADER",
            format!("shard {shard} has no leader yet; retry with the same request id"),
        ),
    };
    status(Code::Unavailable, message, reason, &metadata)
}

/// `ABORTED`: the proposal was lost to a leader change; retrying with the
/// same request id is safe.
pub fn aborted(shard: u32, why: &str) -> Status {
    status(
        Code::Aborted,
        format!("shard {shard}: {why}; retry with the same request id"),
        "PROPOSAL_DROPPED",
        &[("shard", shard.to_string())],
    )
}

fn state_name(state: ReservationState) -> &'static str {
    match state {
        ReservationState::Pending => "PENDING",
        ReservationState::Confirmed => "CONFIRMED",
        ReservationState::Released => "RELEASED",
        ReservationState::Expired => "EXPIRED",
    }
}

/// What a refusal is about, for messages: the SKU of a request line and
/// location names, looked up by the caller.
pub struct RefusalContext<'a> {
    /// SKU of request line `i`.
    pub sku_of_line: &'a dyn Fn(u16) -> Option<String>,
    /// Name of a location id.
    pub location_name: &'a dyn Fn(holdfast_engine::LocationId) -> String,
    /// The log index the refusal was decided at.
    pub as_of_index: u64,
}

/// Maps an engine refusal to its status.
pub fn refusal(r: &Refusal, ctx: &RefusalContext<'_>) -> Status {
    let sku = |line: u16| (ctx.sku_of_line)(line).unwrap_or_default();
    match *r {
        Refusal::OutOfStock { line, location, requested, available } => {
            let location = location.map(|l| (ctx.location_name)(l)).unwrap_or_default();
            status(
                Code::FailedPrecondition,
                format!(
                    "lines[{line}]: {requested} of {} requested, {available} available at {} (as of log index {})",
                    sku(line),
                    if location.is_empty() { "any location" } else { &location },
                    ctx.as_of_index
                ),
                "OUT_OF_STOCK",
                &[
                    ("line", line.to_string()),
                    ("sku", sku(line)),
                    ("location", location),
                    ("requested", requested.to_string()),
                    ("available", available.to_string()),
                    ("as_of_index", ctx.as_of_index.to_string()),
                ],
            )
        }
        Refusal::LimitExceeded { line, limit, used, requested } => status(
            Code::FailedPrecondition,
            format!("lines[{line}]: customer limit of {limit} for {} exceeded ({used} used, {requested} requested)", sku(line)),
            "LIMIT_EXCEEDED",
            &[
                ("line", line.to_string()),
                ("sku", sku(line)),
                ("limit", limit.to_string()),
                ("used", used.to_string()),
                ("requested", requested.to_string()),
            ],
        ),
        Refusal::NotPending { state } => status(
            Code::FailedPrecondition,
            format!("reservation is {}, not pending", state_name(state)),
            "RESERVATION_NOT_PENDING",
            &[("state", state_name(state).to_string())],
        ),
        Refusal::UnknownReservation => status(
            Code::NotFound,
            "no such reservation (or resolved and forgotten)".into(),
            "RESERVATION_NOT_FOUND",
            &[],
        ),
        Refusal::UnknownLocation { line } => status(
            Code::NotFound,
            match line {
                Some(l) => format!("lines[{l}].location does not exist"),
                None => "location does not exist".into(),
            },
            "LOCATION_NOT_FOUND",
            &[("line", line.map(|l| l.to_string()).unwrap_or_default())],
        ),
        Refusal::DuplicateRequestMismatch => status(
            Code::AlreadyExists,
            "request_id was already used with a different request body".into(),
            "REQUEST_ID_MISMATCH",
            &[],
        ),
        Refusal::ExpectedOnHandMismatch { expected, actual } => status(
            Code::FailedPrecondition,
            format!("expected_on_hand is {expected} but on_hand is {actual}"),
            "ON_HAND_MISMATCH",
            &[("expected", expected.to_string()), ("actual", actual.to_string())],
        ),
        Refusal::HeldExceedsStock { held, supply } => status(
            Code::FailedPrecondition,
            format!("{held} units are held but the change would leave a supply of {supply}; release holds first"),
            "HELD_EXCEEDS_STOCK",
            &[("held", held.to_string()), ("supply", supply.to_string())],
        ),
        Refusal::InvalidArgument(e) => invalid_argument(&e),
    }
}

/// `INVALID_ARGUMENT` for a field the engine's validation refused, named
/// as the API names it (`lines[3].quantity`).
pub fn invalid_argument(e: &InvalidArgument) -> Status {
    let field = match e.line {
        Some(l) => format!("lines[{l}].{}", e.field),
        None => e.field.to_string(),
    };
    invalid(&field, e.why)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_stock_carries_its_details() {
        let ctx = RefusalContext {
            sku_of_line: &|_| Some("SKU-1".into()),
            location_name: &|_| "berlin".into(),
            as_of_index: 42,
        };
        let s = refusal(
            &Refusal::OutOfStock {
                line: 0,
                location: Some(holdfast_engine::LocationId(0)),
                requested: 3,
                available: 1,
            },
            &ctx,
        );
        assert_eq!(s.code(), Code::FailedPrecondition);
        let info = s.get_details_error_info().expect("ErrorInfo");
        assert_eq!(info.reason, "OUT_OF_STOCK");
        assert_eq!(info.metadata["sku"], "SKU-1");
        assert_eq!(info.metadata["available"], "1");
        assert_eq!(info.metadata["as_of_index"], "42");
    }

    #[test]
    fn mismatch_is_already_exists() {
        let ctx = RefusalContext {
            sku_of_line: &|_| None,
            location_name: &|_| String::new(),
            as_of_index: 0,
        };
        let s = refusal(&Refusal::DuplicateRequestMismatch, &ctx);
        assert_eq!(s.code(), Code::AlreadyExists);
        assert_eq!(
            s.get_details_error_info().unwrap().reason,
            "REQUEST_ID_MISMATCH"
        );
    }
}
