//! The caller's deadline, read from the `grpc-timeout` header, so that a
//! call forwarded to a shard's leader gives up when its caller does (the
//! leader then stops working on it too) instead of running on for the
//! default deadline after the caller has gone.
//!
//! The header is `<1 to 8 digits><unit>`, unit one of `H M S m u n` (hours
//! down to nanoseconds), per the gRPC over HTTP/2 protocol. A malformed one
//! is treated as absent: tonic's own timeout layer has already applied what
//! it could read, and a forwarding hop is no place to refuse the call.

use std::time::Duration;
use tonic::metadata::MetadataMap;

/// Header carrying the caller's remaining time.
pub const GRPC_TIMEOUT: &str = "grpc-timeout";

/// The caller's timeout, if it sent a well-formed one.
pub fn caller_timeout(metadata: &MetadataMap) -> Option<Duration> {
    parse(metadata.get(GRPC_TIMEOUT)?.to_str().ok()?)
}

/// The deadline of a call forwarded on behalf of a caller: the caller's
/// remaining time, at most `cap`.
pub fn forwarded_timeout(metadata: &MetadataMap, cap: Duration) -> Duration {
    caller_timeout(metadata).map_or(cap, |t| t.min(cap))
}

fn parse(value: &str) -> Option<Duration> {
    let unit_at = value.len().checked_sub(1)?;
    if !value.is_char_boundary(unit_at) {
        return None;
    }
    let (digits, unit) = value.split_at(unit_at);
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3_600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_unit_is_read() {
        assert_eq!(parse("2H"), Some(Duration::from_secs(7_200)));
        assert_eq!(parse("3M"), Some(Duration::from_secs(180)));
        assert_eq!(parse("4S"), Some(Duration::from_secs(4)));
        assert_eq!(parse("250m"), Some(Duration::from_millis(250)));
        assert_eq!(parse("99999999u"), Some(Duration::from_micros(99_999_999)));
        assert_eq!(parse("7n"), Some(Duration::from_nanos(7)));
    }

    #[test]
    fn malformed_values_are_absent() {
        for bad in [
            "",
            "S",
            "10",
            "10s",
            "-1S",
            "123456789m",
            "1.5S",
            "1 S",
            "é",
        ] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_forwarded_call_keeps_the_shorter_deadline() {
        let cap = Duration::from_secs(5);
        let mut metadata = MetadataMap::new();
        assert_eq!(forwarded_timeout(&metadata, cap), cap);
        metadata.insert(GRPC_TIMEOUT, "800m".parse().unwrap());
        assert_eq!(
            forwarded_timeout(&metadata, cap),
            Duration::from_millis(800)
        );
        metadata.insert(GRPC_TIMEOUT, "1M".parse().unwrap());
        assert_eq!(forwarded_timeout(&metadata, cap), cap);
    }
}
