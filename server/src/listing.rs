//! `ListReservations`: what a request asks for, and its page tokens.
//!
//! A listing walks the shards in order and each shard's reservation slots
//! in order, so a position is `(shard, slot)`. The page token carries that
//! position and a hash of the filter it belongs to, so a token replayed
//! with another filter is refused instead of silently listing the wrong
//! party from the middle.

use crate::node::messages::{ListQuery, Party};
use crate::pb::inventory as pb;
use crate::status;
use holdfast_engine::ReservationState;
use tonic::Status;
use xxhash_rust::xxh3::xxh3_64;

/// Largest `page_size` accepted.
pub const PAGE_SIZE_MAX: u32 = 1_000;
/// `page_size` when the request leaves it at 0.
pub const PAGE_SIZE_DEFAULT: u32 = 100;
/// Longest owner or customer id accepted (as `Reserve` accepts).
const PARTY_BYTES_MAX: usize = 128;
/// Version tag of the token format.
const TOKEN_PREFIX: &str = "l1";

/// A validated listing request: whose reservations, which state, how many,
/// and where this page starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListPlan {
    /// Whose reservations.
    pub party: Party,
    /// Only this state, if set.
    pub state: Option<ReservationState>,
    /// Most reservations in this page.
    pub page_size: usize,
    /// Shard this page starts in.
    pub shard: u32,
    /// Slot of that shard this page starts at.
    pub slot: u32,
    /// Binds tokens to this filter.
    filter: u64,
}

impl ListPlan {
    /// Checks a request against the API's bounds (each refusal names its
    /// field) and decodes its page token.
    pub fn from_request(r: &pb::ListReservationsRequest, shards: u32) -> Result<Self, Status> {
        let party = match (r.owner_id.is_empty(), r.customer_id.is_empty()) {
            (false, true) => Party::Owner(bounded("owner_id", &r.owner_id)?),
            (true, false) => Party::Customer(bounded("customer_id", &r.customer_id)?),
            _ => {
                return Err(status::invalid(
                    "owner_id",
                    "set exactly one of owner_id and customer_id",
                ))
            }
        };
        let state = match pb::ReservationState::try_from(r.state) {
            Ok(pb::ReservationState::Unspecified) => None,
            Ok(pb::ReservationState::Pending) => Some(ReservationState::Pending),
            Ok(pb::ReservationState::Confirmed) => Some(ReservationState::Confirmed),
            Ok(pb::ReservationState::Released) => Some(ReservationState::Released),
            Ok(pb::ReservationState::Expired) => Some(ReservationState::Expired),
            Err(_) => return Err(status::invalid("state", "is not a ReservationState")),
        };
        let page_size = match r.page_size {
            0 => PAGE_SIZE_DEFAULT,
            n if n <= PAGE_SIZE_MAX => n,
            _ => return Err(status::invalid("page_size", "must be 0 to 1000")),
        } as usize;
        let filter = filter_hash(&party, state);
        let (shard, slot) = if r.page_token.is_empty() {
            (0, 0)
        } else {
            decode_token(&r.page_token, filter)
                .filter(|&(shard, _)| shard < shards)
                .ok_or_else(|| {
                    status::invalid(
                        "page_token",
                        "is not a token of this listing (same owner_id, customer_id and state)",
                    )
                })?
        };
        Ok(ListPlan {
            party,
            state,
            page_size,
            shard,
            slot,
            filter,
        })
    }

    /// The read for the shard at `shard`, from `slot`, wanting `limit` more.
    pub fn query(&self, slot: u32, limit: usize) -> ListQuery {
        ListQuery {
            party: self.party.clone(),
            state: self.state,
            from_slot: slot,
            limit,
        }
    }

    /// The token that resumes this listing at `(shard, slot)`.
    pub fn token(&self, shard: u32, slot: u32) -> String {
        format!("{TOKEN_PREFIX}.{shard}.{slot}.{:016x}", self.filter)
    }
}

fn bounded(field: &str, value: &str) -> Result<String, Status> {
    if value.len() > PARTY_BYTES_MAX {
        return Err(status::invalid(field, "must be 1 to 128 bytes"));
    }
    Ok(value.to_string())
}

fn filter_hash(party: &Party, state: Option<ReservationState>) -> u64 {
    let (kind, id) = match party {
        Party::Owner(id) => ('o', id),
        Party::Customer(id) => ('c', id),
    };
    let state = state.map_or(-1, |s| s as i32);
    xxh3_64(format!("{kind}\u{0}{id}\u{0}{state}").as_bytes())
}

fn decode_token(token: &str, filter: u64) -> Option<(u32, u32)> {
    let mut parts = token.split('.');
    let (prefix, shard, slot, hash) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if prefix != TOKEN_PREFIX || parts.next().is_some() {
        return None;
    }
    let hash = u64::from_str_radix(hash, 16).ok()?;
    (hash == filter).then_some(())?;
    Some((shard.parse().ok()?, slot.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use tonic::Code;

    fn owner(id: &str) -> pb::ListReservationsRequest {
        pb::ListReservationsRequest {
            owner_id: id.into(),
            ..Default::default()
        }
    }

    #[test]
    fn tokens_resume_where_they_were_made() {
        let plan = ListPlan::from_request(&owner("cart-1"), 8).unwrap();
        assert_eq!((plan.shard, plan.slot, plan.page_size), (0, 0, 100));
        let mut next = owner("cart-1");
        next.page_token = plan.token(5, 77);
        let resumed = ListPlan::from_request(&next, 8).unwrap();
        assert_eq!((resumed.shard, resumed.slot), (5, 77));
    }

    #[test]
    fn a_token_of_another_listing_is_refused() {
        let plan = ListPlan::from_request(&owner("cart-1"), 8).unwrap();
        for other in [
            owner("cart-2"),
            pb::ListReservationsRequest {
                customer_id: "cart-1".into(),
                ..Default::default()
            },
            pb::ListReservationsRequest {
                owner_id: "cart-1".into(),
                state: pb::ReservationState::Pending as i32,
                ..Default::default()
            },
        ] {
            let mut r = other;
            r.page_token = plan.token(1, 2);
            let err = ListPlan::from_request(&r, 8).unwrap_err();
            assert_eq!(err.code(), Code::InvalidArgument);
            assert!(err.message().contains("page_token"), "{}", err.message());
        }
        let mut r = owner("cart-1");
        r.page_token = plan.token(8, 0);
        assert!(ListPlan::from_request(&r, 8).is_err(), "shard out of range");
    }

    #[test]
    fn bad_requests_name_their_field() {
        let cases = [
            (pb::ListReservationsRequest::default(), "owner_id"),
            (
                pb::ListReservationsRequest {
                    owner_id: "a".into(),
                    customer_id: "b".into(),
                    ..Default::default()
                },
                "owner_id",
            ),
            (owner(&"x".repeat(129)), "owner_id"),
            (
                pb::ListReservationsRequest {
                    owner_id: "a".into(),
                    page_size: 1_001,
                    ..Default::default()
                },
                "page_size",
            ),
            (
                pb::ListReservationsRequest {
                    owner_id: "a".into(),
                    state: 42,
                    ..Default::default()
                },
                "state",
            ),
        ];
        for (request, field) in cases {
            let err = ListPlan::from_request(&request, 8).unwrap_err();
            assert_eq!(err.code(), Code::InvalidArgument);
            assert!(err.message().starts_with(field), "{}", err.message());
        }
    }

    proptest! {
        /// Whatever arrives as a token, decoding never panics, and only a
        /// well-formed token of this very listing is accepted.
        #[test]
        fn arbitrary_tokens_never_panic(token in ".{0,64}") {
            let mut r = owner("cart-1");
            r.page_token = token.clone();
            match ListPlan::from_request(&r, 8) {
                Ok(plan) if token.is_empty() => prop_assert_eq!((plan.shard, plan.slot), (0, 0)),
                Ok(plan) => prop_assert_eq!(plan.token(plan.shard, plan.slot), token),
                Err(_) => {}
            }
        }
    }
}
