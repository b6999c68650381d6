//! Wire identifiers: client request ids and public reservation ids.
//!
//! Clients send request ids as strings (UUIDs, typically); the engine keys
//! its idempotency table by 128 bits, so the server maps each string with
//! XXH3-128 (a fixed, specified hash: every node maps a string alike). A
//! reservation id on the wire is `"<shard>-<engine id>"`, so any node can
//! route a Confirm/Release/Extend to the shard that holds it.

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
    fn fanned_out_ids_differ_per_shard() {
        let base = request_id("r").unwrap();
        assert_ne!(request_id_for_shard(base, 0), request_id_for_shard(base, 1));
        assert_eq!(request_id_for_shard(base, 0), base);
    }
}
