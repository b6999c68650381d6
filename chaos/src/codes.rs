//! What a gRPC error status tells the checker about whether a request took
//! effect (design §6 lists the codes the server uses).
//!
//! Only a status that the server can return *after* the request may have
//! reached the log leaves the outcome open. `UNAVAILABLE` is one of them: a
//! node that forwarded a request to the leader answers `UNAVAILABLE` when
//! the connection drops, even if the leader applied it. Any code not named
//! here is treated as open too, so a new code can only make the checker
//! more lenient, never raise a false alarm.

use std::collections::BTreeMap;

/// What a refusal says about the request's effect.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CodeClass {
    /// The request was decided by the ledger and changed nothing; the
    /// answer is the one stored under its request id, so every retry must
    /// get the same one (`FAILED_PRECONDITION`, `NOT_FOUND`).
    Decided,
    /// The request id was already used with another body
    /// (`ALREADY_EXISTS`): this attempt changed nothing.
    IdTaken,
    /// Refused before it reached the log and not stored: no effect, and a
    /// retry may be answered differently (`INVALID_ARGUMENT`,
    /// `RESOURCE_EXHAUSTED`, and any refusal marked `stale`).
    NotApplied,
    /// The request may or may not have been applied, now or later.
    Open,
}

/// Metadata key a server sets (value `"true"`) on a refusal it decided from
/// a node's possibly lagging applied state rather than through the log,
/// such as the sold-out pre-filter of design §5. Such a refusal is as stale
/// as a `STALE` read: it changed nothing and proves nothing.
pub const STALE_METADATA_KEY: &str = "stale";

/// Classifies a refusal by its gRPC code name and `ErrorInfo` metadata.
pub fn classify(code: &str, metadata: &BTreeMap<String, String>) -> CodeClass {
    if metadata.get(STALE_METADATA_KEY).map(String::as_str) == Some("true") {
        return CodeClass::NotApplied;
    }
    match code {
        "FAILED_PRECONDITION" | "NOT_FOUND" => CodeClass::Decided,
        "ALREADY_EXISTS" => CodeClass::IdTaken,
        "INVALID_ARGUMENT" | "RESOURCE_EXHAUSTED" | "OUT_OF_RANGE" | "PERMISSION_DENIED"
        | "UNAUTHENTICATED" | "UNIMPLEMENTED" => CodeClass::NotApplied,
        _ => CodeClass::Open,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_unless_the_code_proves_otherwise() {
        let none = BTreeMap::new();
        assert_eq!(classify("FAILED_PRECONDITION", &none), CodeClass::Decided);
        assert_eq!(classify("ALREADY_EXISTS", &none), CodeClass::IdTaken);
        assert_eq!(classify("RESOURCE_EXHAUSTED", &none), CodeClass::NotApplied);
        for open in [
            "UNAVAILABLE",
            "ABORTED",
            "DEADLINE_EXCEEDED",
            "INTERNAL",
            "NEW_CODE",
        ] {
            assert_eq!(classify(open, &none), CodeClass::Open, "{open}");
        }
        let stale = BTreeMap::from([(STALE_METADATA_KEY.to_string(), "true".to_string())]);
        assert_eq!(
            classify("FAILED_PRECONDITION", &stale),
            CodeClass::NotApplied
        );
    }
}
