//! Wire identifiers: client request ids and public reservation ids.
//!
//! Clients send request ids as strings (UUIDs, typically); the engine keys
//! its idempotency table by 128 bits, so the server maps each string with
//! XXH3-128 (a fixed, specified hash: every node maps a string alike). A
//! reservation id on the wire is `"<shard>-<engine id>"`, so any node can
//! route a Confirm/Release/Extend to the shard that holds it. A
//! cross-shard reservation (design §4, `crate::cross_shard`) is held as one
//! such reservation per shard, its *parts*; its id joins theirs with `+`
//! in strictly increasing shard order (`"2-17+5-40"`), so the id alone
//! says where every part is and in which order its lines come.

use holdfast_engine::{RequestId, ReservationId};
use xxhash_rust::xxh3::xxh3_128;

/// Longest request id accepted, in bytes.
pub const REQUEST_ID_BYTES_MAX: usize = 128;

/// Why a wire id was refused (names the field for `INVALID_ARGUMENT`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadId {
    /// API field name.
    pub field: &'static str,
    /// What is wrong.
    pub why: &'static str,
}

/// Maps a client's request id to the engine's 128-bit key.
pub fn request_id(wire: &str) -> Result<RequestId, BadId> {
    if wire.is_empty() || wire.len() > REQUEST_ID_BYTES_MAX {
        return Err(BadId {
            field: "request_id",
            why: "must be 1 to 128 bytes",
        });
    }
    Ok(RequestId(xxh3_128(wire.as_bytes())))
}

/// The request id a shard sees for one part of a request fanned out to
/// several shards (e.g. `UpsertLocation`): distinct per shard, stable per
/// request.
pub fn request_id_for_shard(base: RequestId, shard: u32) -> RequestId {
    RequestId(base.0 ^ (shard as u128).rotate_left(64))
}

/// The public id of a reservation held on `shard`.
pub fn reservation_to_wire(shard: u32, id: ReservationId) -> String {
    format!("{shard}-{}", id.0)
}

/// Parses a public reservation id into its shard and engine id.
pub fn reservation_from_wire(wire: &str, shards: u32) -> Result<(u32, ReservationId), BadId> {
    const BAD: BadId = BadId {
        field: "reservation_id",
        why: "is not a reservation id issued by this cluster",
    };
    let (shard, id) = wire.split_once('-').ok_or(BAD)?;
    let shard: u32 = shard.parse().map_err(|_| BAD)?;
    let id: u64 = id.parse().map_err(|_| BAD)?;
    if shard >= shards {
        return Err(BAD);
    }
    Ok((shard, ReservationId(id)))
}

/// Joins the part ids of a cross-shard reservation.
pub const PART_SEPARATOR: char = '+';

/// Parts (shards) one cross-shard reservation may have. Each part costs one
/// Raft round trip per call on the reservation (in parallel) and up to 26
/// bytes of its id; 16 parts keep a joined id under 420 bytes and a
/// call's fan-out small, and with the default 8 shards no reservation can
/// reach it. A Reserve whose lines fall in more shards is refused
/// (`INVALID_ARGUMENT`, field `lines`).
pub const RESERVATION_PARTS_MAX: usize = 16;

/// Longest joined reservation id accepted, in bytes: `RESERVATION_PARTS_MAX`
/// parts of at most 10 (shard) + 1 + 20 (engine id) bytes, and separators.
/// Checked before parsing, so a huge string costs nothing.
pub const JOINED_ID_BYTES_MAX: usize = RESERVATION_PARTS_MAX * 32;

/// Whether `wire` is the id of a cross-shard reservation (it has parts).
/// Such an id is served by `crate::cross_shard`, never forwarded whole.
pub fn is_joined(wire: &str) -> bool {
    wire.contains(PART_SEPARATOR)
}

/// The public id of a reservation held in `parts`: the part ids joined,
/// in the order given (callers pass them in shard order). One part gives
/// an ordinary id.
pub fn joined_to_wire(parts: &[(u32, ReservationId)]) -> String {
    let mut wire = String::new();
    for (i, &(shard, id)) in parts.iter().enumerate() {
        if i > 0 {
            wire.push(PART_SEPARATOR);
        }
        wire.push_str(&reservation_to_wire(shard, id));
    }
    wire
}

/// Parses a joined reservation id into its parts: 2 to
/// `RESERVATION_PARTS_MAX` ids of this cluster, in strictly increasing
/// shard order, each number in canonical decimal (no sign, space or
/// leading zero), so every reservation has exactly one joined id and a
/// shard appears once.
pub fn joined_from_wire(wire: &str, shards: u32) -> Result<Vec<(u32, ReservationId)>, BadId> {
    const FIELD: &str = "reservation_id";
    let bad = |why| BadId { field: FIELD, why };
    if wire.len() > JOINED_ID_BYTES_MAX {
        return Err(bad("is longer than any reservation id of this cluster"));
    }
    let mut parts: Vec<(u32, ReservationId)> = Vec::new();
    for part in wire.split(PART_SEPARATOR) {
        if parts.len() == RESERVATION_PARTS_MAX {
            return Err(bad("has more than 16 parts"));
        }
        // Canonical decimal: digits only, no leading zero.
        let digits = |s: &str| {
            !s.is_empty()
                && s.bytes().all(|b| b.is_ascii_digit())
                && (s == "0" || !s.starts_with('0'))
        };
        match part.split_once('-') {
            Some((shard, id)) if digits(shard) && digits(id) => {}
            _ => {
                return Err(bad(
                    "has a part that is not a reservation id of this cluster",
                ))
            }
        }
        let (shard, id) = reservation_from_wire(part, shards)?;
        if parts.last().is_some_and(|&(previous, _)| previous >= shard) {
            return Err(bad("has parts out of shard order or twice on one shard"));
        }
        parts.push((shard, id));
    }
    if parts.len() < 2 {
        return Err(bad("has fewer than two parts"));
    }
    Ok(parts)
}

/// What a request derived for one part of a cross-shard call does: each
/// gets request ids of its own, so that (for example) the release that
/// undoes a part never collides with a release the client asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PartOp {
    /// The part's share of a Reserve.
    Reserve,
    /// The release of a held part because another part was refused.
    Compensate,
    /// The part's share of a Confirm.
    Confirm,
    /// The part's share of a Release.
    Release,
    /// The part's share of an Extend.
    Extend,
}

/// The request id (wire form) of the part on `shard` of a cross-shard call
/// whose client request id is `base` and whose parts are on `shards`.
///
/// Deterministic, so a retry of the call with the same id sends every part
/// again under the same id and each shard answers with its first answer
/// (design §1.3). The part shards are mixed in, so that the same client id
/// with lines on another set of shards shares no part with the first call
/// (it is then a new request, as the same id on another shard always was),
/// while the same id and shards with another body makes some part's body
/// differ, which that shard refuses as `ALREADY_EXISTS`. The result, `"p-"`
/// and 32 hex digits, is a valid request id of its own, so a part travels
/// as an ordinary request to its shard's leader.
pub fn part_request_id(base: &str, op: PartOp, shard: u32, shards: &[u32]) -> String {
    let mut bytes = Vec::with_capacity(32 + base.len() + 4 * shards.len());
    bytes.extend_from_slice(b"holdfast/part/1");
    bytes.push(op as u8);
    bytes.extend_from_slice(&(base.len() as u64).to_le_bytes());
    bytes.extend_from_slice(base.as_bytes());
    bytes.extend_from_slice(&shard.to_le_bytes());
    bytes.extend_from_slice(&(shards.len() as u64).to_le_bytes());
    for s in shards {
        bytes.extend_from_slice(&s.to_le_bytes());
    }
    format!("p-{:032x}", xxh3_128(&bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_stable_and_bounded() {
        assert_eq!(request_id("abc"), request_id("abc"));
        assert_ne!(request_id("abc"), request_id("abd"));
        assert!(request_id("").is_err());
        assert!(request_id(&"x".repeat(129)).is_err());
        // Pinned: the mapping is part of the cluster's format.
        assert_eq!(
            request_id("abc").unwrap().0,
            0x06b05ab6733a618578af5f94892f3950
        );
    }

    #[test]
    fn reservation_ids_round_trip_and_refuse_garbage() {
        let wire = reservation_to_wire(3, ReservationId(1 << 40));
        assert_eq!(
            reservation_from_wire(&wire, 8),
            Ok((3, ReservationId(1 << 40)))
        );
        for bad in ["", "3", "x-1", "3-x", "9-1", "-1", "3--1", "99999999999-1"] {
            assert!(reservation_from_wire(bad, 8).is_err(), "{bad}");
        }
    }

    #[test]
    fn joined_ids_round_trip() {
        let parts = vec![(2, ReservationId(17)), (5, ReservationId(u64::MAX))];
        let wire = joined_to_wire(&parts);
        assert_eq!(wire, format!("2-17+5-{}", u64::MAX));
        assert!(is_joined(&wire));
        assert_eq!(joined_from_wire(&wire, 8), Ok(parts));
        assert!(!is_joined("2-17"));
        assert_eq!(joined_to_wire(&[(3, ReservationId(1))]), "3-1");
    }

    #[test]
    fn joined_ids_refuse_garbage_naming_the_field() {
        let long = "1-1+".repeat(JOINED_ID_BYTES_MAX);
        let seventeen = (0..17).map(|s| format!("{s}-1")).collect::<Vec<_>>();
        for bad in [
            "+",
            "2-17+",
            "+2-17",
            "2-17",
            "2-17++5-40",
            "5-40+2-17",
            "2-17+2-18",
            "2-17+9-1",
            "2-17+5-x",
            "2-17+5-+40",
            "2-17++40",
            "2-17+5--40",
            "2-17+5-40-1",
            "2-17+ 5-40",
            "2-17+05-40",
            "2-17+5-040",
            "2-17+5-99999999999999999999",
            &long,
            &seventeen.join("+"),
        ] {
            let e = joined_from_wire(bad, 8).expect_err(bad);
            assert_eq!(e.field, "reservation_id", "{bad}");
        }
        let sixteen = (0..16).map(|s| format!("{s}-1")).collect::<Vec<_>>();
        assert_eq!(
            joined_from_wire(&sixteen.join("+"), 16).map(|p| p.len()),
            Ok(16)
        );
    }

    #[test]
    fn part_request_ids_are_valid_stable_and_distinct() {
        let id = |op, shard, shards: &[u32]| part_request_id("r-1", op, shard, shards);
        let a = id(PartOp::Reserve, 2, &[2, 5]);
        assert_eq!(a, id(PartOp::Reserve, 2, &[2, 5]));
        assert!(request_id(&a).is_ok());
        assert_eq!(a.len(), 34);
        for other in [
            id(PartOp::Reserve, 5, &[2, 5]),
            id(PartOp::Reserve, 2, &[2, 6]),
            id(PartOp::Compensate, 2, &[2, 5]),
            id(PartOp::Confirm, 2, &[2, 5]),
            part_request_id("r-2", PartOp::Reserve, 2, &[2, 5]),
        ] {
            assert_ne!(a, other);
        }
        // Never the client's own id on any shard.
        assert_ne!(a, "r-1");
    }

    /// Pinned: part ids are stored in every shard's idempotency table, and
    /// the chaos checker (`chaos/src/parts.rs`) derives the same ids to
    /// find the parts a replica applied; its test pins these values too.
    #[test]
    fn part_request_ids_are_pinned() {
        assert_eq!(
            part_request_id("r-1", PartOp::Reserve, 2, &[2, 5]),
            "p-caf29554a5aeeba70d61d980ceaf6ace"
        );
        assert_eq!(
            part_request_id("c-7-p3-12", PartOp::Confirm, 5, &[0, 5]),
            "p-5abc40b9f56e4ce2d5ad5641273af9aa"
        );
        assert_eq!(
            part_request_id("r-1", PartOp::Compensate, 5, &[2, 5]),
            "p-b4e5ba9048125455d8657ad804352720"
        );
    }

    proptest::proptest! {
        /// Any string is parsed or refused naming the field, never a panic;
        /// what parses prints back to itself (one id per reservation).
        #[test]
        fn joined_parse_never_panics(wire in "[0-9+\\- x]{0,40}") {
            if let Ok(parts) = joined_from_wire(&wire, 8) {
                proptest::prop_assert_eq!(joined_to_wire(&parts), wire);
            }
        }

        /// Every list of parts in shard order round-trips.
        #[test]
        fn joined_round_trip(ids in proptest::collection::btree_map(0u32..64, proptest::num::u64::ANY, 2..=16)) {
            let parts: Vec<(u32, ReservationId)> =
                ids.into_iter().map(|(s, id)| (s, ReservationId(id))).collect();
            proptest::prop_assert_eq!(joined_from_wire(&joined_to_wire(&parts), 64), Ok(parts));
        }
    }

    #[test]
    fn fanned_out_ids_differ_per_shard() {
        let base = request_id("r").unwrap();
        assert_ne!(request_id_for_shard(base, 0), request_id_for_shard(base, 1));
        assert_eq!(request_id_for_shard(base, 0), base);
    }
}
