//! Request ids and reservation ids as the client sees them.
//!
//! A request id is the idempotency key of a mutating call (design §1.3).
//! The client makes one per call unless the caller passes their own, and
//! every retry of that call sends the same id, so a retry can never apply
//! twice. A reservation id is opaque to callers, but it starts with the
//! shard that holds the reservation (`"<shard>-<engine id>"`, see
//! `server/src/ids.rs`), which lets the client send Confirm, Release and
//! Extend straight to that shard's leader. A cross-shard reservation's id
//! joins its parts' ids with `+` (`"2-17+5-40"`); the node that receives a
//! call on it acts on every part, so the client sends it to the first
//! part's leader, which serves that part without a hop.

/// Random bits in a generated request id: as many as the server keys its
/// idempotency table by (XXH3-128 of the id), so collisions are as unlikely
/// as the table allows.
pub const REQUEST_ID_BITS: u32 = 128;

/// A fresh request id: 128 random bits from the operating system as 32
/// lowercase hex digits.
pub fn new_request_id() -> String {
    let mut bytes = [0u8; (REQUEST_ID_BITS / 8) as usize];
    if getrandom::fill(&mut bytes).is_err() {
        // The OS source failed (never seen on Linux): fall back to a PRNG
        // seeded from the clock and the process, still 128 bits wide.
        let mut rng = fastrand::Rng::new();
        for b in &mut bytes {
            *b = rng.u8(..);
        }
    }
    let mut id = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        id.push_str(&format!("{b:02x}"));
    }
    id
}

/// The shard a wire reservation id names (for a joined id, its first
/// part's), if it has the server's format. `None` sends the call to any
/// node, which answers `INVALID_ARGUMENT` (naming `reservation_id`) for a
/// malformed id.
pub fn reservation_shard(reservation_id: &str) -> Option<u32> {
    let mut shards = reservation_id.split('+').map(|part| {
        let (shard, id) = part.split_once('-')?;
        id.parse::<u64>().ok()?;
        shard.parse::<u32>().ok()
    });
    let first = shards.next()??;
    shards.all(|s| s.is_some()).then_some(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_are_32_hex_digits_and_distinct() {
        let a = new_request_id();
        let b = new_request_id();
        assert_eq!(a.len(), 32);
        assert!(a
            .bytes()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert_ne!(a, b);
    }

    #[test]
    fn reservation_ids_name_their_shard() {
        assert_eq!(reservation_shard("3-1099511627776"), Some(3));
        assert_eq!(reservation_shard("0-0"), Some(0));
        for bad in ["", "3", "x-1", "3-x", "-1", "3--1"] {
            assert_eq!(reservation_shard(bad), None, "{bad}");
        }
    }

    #[test]
    fn joined_ids_route_to_their_first_part() {
        assert_eq!(reservation_shard("2-17+5-40"), Some(2));
        assert_eq!(reservation_shard("0-0+1-3+7-9"), Some(0));
        for bad in ["2-17+", "+2-17", "2-17+x", "2-17++5-40", "2-17+5-x"] {
            assert_eq!(reservation_shard(bad), None, "{bad}");
        }
    }
}
