//! Exit codes of the CLI: one per kind of error, so that scripts can tell
//! "out of stock" from "cluster down" without parsing text. The `--help`
//! text is built from the same table.

use holdfast_client::Error;

/// Success.
pub const OK: u8 = 0;
/// Any error without a code of its own.
pub const OTHER: u8 = 1;

/// `(code, reasons, meaning)`; `reasons` are [`Error::reason`] values.
pub const EXIT_CODES: &[(u8, &[&str], &str)] = &[
    (OK, &[], "success"),
    (OTHER, &["SERVER"], "any other error (an internal server error, a reason this CLI does not know)"),
    (2, &[], "usage error: bad or missing flags"),
    (3, &["UNAVAILABLE"], "no node could serve the call (no leader, nodes down), retries included"),
    (4, &["DEADLINE_EXCEEDED"], "the deadline passed first; the call may have applied: repeat it with the same --request-id to find out"),
    (5, &["INVALID_ARGUMENT"], "a field is out of bounds (the error names it)"),
    (6, &["RESERVATION_NOT_FOUND"], "no such reservation"),
    (7, &["LOCATION_NOT_FOUND"], "no such location"),
    (8, &["OUT_OF_STOCK"], "not enough units available"),
    (9, &["LIMIT_EXCEEDED"], "the customer's limit for the SKU would be exceeded"),
    (10, &["RESERVATION_NOT_PENDING"], "the reservation was already confirmed, released or expired"),
    (11, &["REQUEST_ID_MISMATCH"], "the request id was used before with a different request"),
    (12, &["ON_HAND_MISMATCH"], "--expected-on-hand did not match"),
    (13, &["HELD_EXCEEDS_STOCK"], "the change would leave fewer units than are held"),
    (14, &["RESOURCE_EXHAUSTED", "ABORTED"], "the cluster shed the call or lost it to a leader change, retries included"),
    (15, &["INVALID_ENDPOINT"], "a --nodes address cannot be used"),
];

/// The exit code of `error`.
pub fn code(error: &Error) -> u8 {
    EXIT_CODES
        .iter()
        .find(|(_, reasons, _)| reasons.contains(&error.reason()))
        .map_or(OTHER, |(code, _, _)| *code)
}

/// The exit-code section of `--help`.
pub fn help() -> String {
    let mut s = String::from("Exit codes:\n");
    for (code, reasons, meaning) in EXIT_CODES {
        let reasons = if reasons.is_empty() {
            String::new()
        } else {
            format!(" [{}]", reasons.join(", "))
        };
        s.push_str(&format!("  {code:>2}  {meaning}{reasons}\n"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_distinct_and_every_reason_has_its_own() {
        let mut codes: Vec<u8> = EXIT_CODES.iter().map(|(c, _, _)| *c).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), EXIT_CODES.len());
        let mut reasons: Vec<&str> = EXIT_CODES
            .iter()
            .flat_map(|(_, r, _)| r.iter().copied())
            .collect();
        let n = reasons.len();
        reasons.sort_unstable();
        reasons.dedup();
        assert_eq!(reasons.len(), n, "a reason listed twice");
        let oos = Error::OutOfStock {
            sku: "S".into(),
            location: None,
            line: None,
            requested: 1,
            available: 0,
            as_of_index: 1,
        };
        assert_eq!(code(&oos), 8);
        let down = Error::Unavailable {
            shard: None,
            leader_hint: None,
            message: String::new(),
        };
        assert_eq!(code(&down), 3);
        assert!(help().contains(" 8  not enough units available [OUT_OF_STOCK]"));
    }
}
