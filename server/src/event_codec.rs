//! The change events a node keeps (`pb::Event`), encoded straight from the
//! engine's event and names into one buffer per entry: no `pb::Event` is
//! built, so an event costs no allocation of its own (the old encoder made
//! three strings and a vector per event, on the driver thread, for every
//! unit that moved). The bytes are exactly prost's encoding of the event
//! (tested against that encoder), so readers decode them with prost.

use crate::pb::inventory as pb;
use crate::proto_write as w;
use holdfast_engine::{Engine, Event, ReleaseCause};

/// The events of one entry, encoded back to back.
#[derive(Default)]
pub struct EncodedEvents {
    bytes: Vec<u8>,
    /// Where each event ends in `bytes`.
    ends: Vec<usize>,
}

impl EncodedEvents {
    /// Forgets every event, keeping the buffers.
    pub fn clear(&mut self) {
        self.bytes.clear();
        self.ends.clear();
    }

    /// Events encoded so far.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Each event's bytes, in order.
    pub fn iter(&self) -> impl Iterator<Item = &[u8]> {
        let starts = std::iter::once(0).chain(self.ends.iter().copied());
        starts.zip(&self.ends).map(|(s, &e)| &self.bytes[s..e])
    }

    /// Encodes `event`, the next one of the entry at `index` of `shard`
    /// (its `seq` is the number of events before it), applied at `at_ms`.
    pub fn push(&mut self, engine: &Engine, shard: u32, index: u64, at_ms: u64, event: &Event) {
        let seq = self.ends.len() as u32;
        encode_into(engine, shard, index, seq, at_ms, event, &mut self.bytes);
        self.ends.push(self.bytes.len());
    }
}

/// The fields of a `pb::Event`, borrowed from the engine.
#[derive(Default)]
struct Fields<'a> {
    kind: i32,
    /// `(shard, engine id)` of the reservation, written as `"shard-id"`.
    reservation: Option<(u32, u64)>,
    sku: &'a str,
    location: &'a str,
    quantity: i64,
    available_after: i64,
    on_hand_after: i64,
    release_cause: i32,
    expires_at_ms: u64,
    safety_stock: i64,
    backorder_allowance: i64,
    max_units: Option<u64>,
    campaign: u32,
}

/// Appends the encoding of `event` (numbered `(shard, index, seq)`,
/// applied at `at_ms`) to `out`.
pub fn encode_into(
    engine: &Engine,
    shard: u32,
    index: u64,
    seq: u32,
    at_ms: u64,
    event: &Event,
    out: &mut Vec<u8>,
) {
    let row_names = |row| {
        let row = engine.row(row);
        (
            engine.sku_name(row.sku),
            engine.location(row.location).name.as_ref(),
        )
    };
    let held_by = |r: holdfast_engine::ReservationId| Some((shard, r.0));
    let mut f = Fields::default();
    match *event {
        Event::Held {
            reservation,
            row,
            quantity,
            available_after,
        } => {
            f.kind = pb::EventKind::Held as i32;
            f.reservation = held_by(reservation);
            (f.sku, f.location) = row_names(row);
            f.quantity = quantity as i64;
            f.available_after = available_after;
        }
        Event::Confirmed {
            reservation,
            row,
            quantity,
        } => {
            f.kind = pb::EventKind::Confirmed as i32;
            f.reservation = held_by(reservation);
            (f.sku, f.location) = row_names(row);
            f.quantity = quantity as i64;
        }
        Event::Released {
            reservation,
            row,
            quantity,
            cause,
            available_after,
        } => {
            let (kind, cause) = match cause {
                ReleaseCause::Released => {
                    (pb::EventKind::Released, pb::ReleaseCause::ClientRelease)
                }
                ReleaseCause::ConfirmRemainder => {
                    (pb::EventKind::Released, pb::ReleaseCause::ConfirmRemainder)
                }
                ReleaseCause::Expired => (pb::EventKind::Expired, pb::ReleaseCause::Unspecified),
            };
            (f.kind, f.release_cause) = (kind as i32, cause as i32);
            f.reservation = held_by(reservation);
            (f.sku, f.location) = row_names(row);
            f.quantity = quantity as i64;
            f.available_after = available_after;
        }
        Event::Extended {
            reservation,
            expires_at_ms,
        } => {
            f.kind = pb::EventKind::Extended as i32;
            f.reservation = held_by(reservation);
            f.expires_at_ms = expires_at_ms;
        }
        Event::Adjusted {
            row,
            delta,
            on_hand,
        } => {
            f.kind = pb::EventKind::Adjusted as i32;
            (f.sku, f.location) = row_names(row);
            f.quantity = delta;
            f.on_hand_after = on_hand;
        }
        Event::LocationUpserted { location } => {
            f.kind = pb::EventKind::LocationUpserted as i32;
            f.location = engine.location(location).name.as_ref();
        }
        Event::RowPolicySet {
            row,
            safety_stock,
            backorder_allowance,
        } => {
            f.kind = pb::EventKind::RowPolicySet as i32;
            (f.sku, f.location) = row_names(row);
            f.safety_stock = safety_stock;
            f.backorder_allowance = backorder_allowance;
        }
        Event::CustomerLimitSet {
            sku,
            max_units,
            campaign,
        } => {
            f.kind = pb::EventKind::CustomerLimitSet as i32;
            f.sku = engine.sku_name(sku);
            f.max_units = max_units;
            f.campaign = campaign;
        }
    }
    write(out, (shard, index, seq), at_ms, &f);
}

/// `pb::Event`'s fields in field-number order.
fn write(out: &mut Vec<u8>, (shard, index, seq): (u32, u64, u32), at_ms: u64, f: &Fields<'_>) {
    w::message(out, 1, |out| {
        w::varint(out, 1, shard.into());
        w::varint(out, 2, index);
        w::varint(out, 3, seq.into());
    });
    w::varint(out, 2, at_ms);
    w::int32(out, 3, f.kind);
    if let Some((shard, id)) = f.reservation {
        // `ids::reservation_to_wire`, without its allocation.
        let mut wire = [0u8; 41];
        let (mut a, mut b) = ([0u8; 20], [0u8; 20]);
        let at = w::decimal(shard.into(), &mut a);
        let shard = &a[at..];
        let at = w::decimal(id, &mut b);
        let id = &b[at..];
        let len = shard.len() + 1 + id.len();
        wire[..shard.len()].copy_from_slice(shard);
        wire[shard.len()] = b'-';
        wire[shard.len() + 1..len].copy_from_slice(id);
        w::bytes(out, 4, &wire[..len]);
    }
    w::bytes(out, 5, f.sku.as_bytes());
    w::bytes(out, 6, f.location.as_bytes());
    w::int64(out, 7, f.quantity);
    w::int64(out, 8, f.available_after);
    w::int64(out, 9, f.on_hand_after);
    w::int32(out, 10, f.release_cause);
    w::varint(out, 11, f.expires_at_ms);
    w::int64(out, 12, f.safety_stock);
    w::int64(out, 13, f.backorder_allowance);
    w::optional_varint(out, 14, f.max_units);
    w::varint(out, 15, f.campaign.into());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids;
    use holdfast_engine::{
        AdjustStock, Command, CommandKind, Confirm, CustomerLimit, ExpireUpTo, Extend, FillPolicy,
        LimitChange, Release, RequestId, Reserve, ReserveLine, SetPolicy, Stamp, UpsertLocation,
    };
    use prost::Message;

    /// The encoder this module replaced: builds the `pb::Event`, then
    /// encodes it with prost. The reference the bytes must match.
    fn reference(
        engine: &Engine,
        shard: u32,
        index: u64,
        seq: u32,
        at_ms: u64,
        event: &Event,
    ) -> Vec<u8> {
        let row_names = |row| {
            let row = engine.row(row);
            (
                engine.sku_name(row.sku).to_string(),
                engine.location(row.location).name.to_string(),
            )
        };
        let mut out = pb::Event {
            cursor: Some(pb::EventCursor { shard, index, seq }),
            at_ms,
            ..Default::default()
        };
        match *event {
            Event::Held {
                reservation,
                row,
                quantity,
                available_after,
            } => {
                out.kind = pb::EventKind::Held as i32;
                out.reservation_id = ids::reservation_to_wire(shard, reservation);
                (out.sku, out.location) = row_names(row);
                out.quantity = quantity as i64;
                out.available_after = available_after;
            }
            Event::Confirmed {
                reservation,
                row,
                quantity,
            } => {
                out.kind = pb::EventKind::Confirmed as i32;
                out.reservation_id = ids::reservation_to_wire(shard, reservation);
                (out.sku, out.location) = row_names(row);
                out.quantity = quantity as i64;
            }
            Event::Released {
                reservation,
                row,
                quantity,
                cause,
                available_after,
            } => {
                let (kind, cause) = match cause {
                    ReleaseCause::Released => {
                        (pb::EventKind::Released, pb::ReleaseCause::ClientRelease)
                    }
                    ReleaseCause::ConfirmRemainder => {
                        (pb::EventKind::Released, pb::ReleaseCause::ConfirmRemainder)
                    }
                    ReleaseCause::Expired => {
                        (pb::EventKind::Expired, pb::ReleaseCause::Unspecified)
                    }
                };
                (out.kind, out.release_cause) = (kind as i32, cause as i32);
                out.reservation_id = ids::reservation_to_wire(shard, reservation);
                (out.sku, out.location) = row_names(row);
                out.quantity = quantity as i64;
                out.available_after = available_after;
            }
            Event::Extended {
                reservation,
                expires_at_ms,
            } => {
                out.kind = pb::EventKind::Extended as i32;
                out.reservation_id = ids::reservation_to_wire(shard, reservation);
                out.expires_at_ms = expires_at_ms;
            }
            Event::Adjusted {
                row,
                delta,
                on_hand,
            } => {
                out.kind = pb::EventKind::Adjusted as i32;
                (out.sku, out.location) = row_names(row);
                out.quantity = delta;
                out.on_hand_after = on_hand;
            }
            Event::LocationUpserted { location } => {
                out.kind = pb::EventKind::LocationUpserted as i32;
                out.location = engine.location(location).name.to_string();
            }
            Event::RowPolicySet {
                row,
                safety_stock,
                backorder_allowance,
            } => {
                out.kind = pb::EventKind::RowPolicySet as i32;
                (out.sku, out.location) = row_names(row);
                out.safety_stock = safety_stock;
                out.backorder_allowance = backorder_allowance;
            }
            Event::CustomerLimitSet {
                sku,
                max_units,
                campaign,
            } => {
                out.kind = pb::EventKind::CustomerLimitSet as i32;
                out.sku = engine.sku_name(sku).to_string();
                out.max_units = max_units;
                out.campaign = campaign;
            }
        }
        out.encode_to_vec()
    }

    /// Every kind of event an engine emits, through commands of every
    /// kind, each encoded by both encoders.
    #[test]
    fn bytes_are_the_old_encoders() {
        let mut engine = Engine::default();
        let mut events = Vec::new();
        let mut encoded = EncodedEvents::default();
        let mut checked = 0;
        let kinds = [
            CommandKind::UpsertLocation(UpsertLocation {
                location: "berlin".into(),
                region: "eu".into(),
                priority: 1,
            }),
            CommandKind::AdjustStock(AdjustStock {
                sku: "SKU-1".into(),
                location: "berlin".into(),
                delta: 1_000_000_000_000,
                expected_on_hand: None,
            }),
            CommandKind::AdjustStock(AdjustStock {
                sku: "SKU-2".into(),
                location: "berlin".into(),
                delta: -3,
                expected_on_hand: None,
            }),
            CommandKind::SetPolicy(SetPolicy {
                sku: "SKU-1".into(),
                location: Some("berlin".into()),
                safety_stock: Some(2),
                backorder_allowance: Some(0),
                customer_limit: LimitChange::Set(CustomerLimit {
                    max_units: 5,
                    campaign: 0,
                }),
            }),
            CommandKind::SetPolicy(SetPolicy {
                sku: "SKU-1".into(),
                location: None,
                safety_stock: None,
                backorder_allowance: None,
                customer_limit: LimitChange::Clear,
            }),
            reserve(2),
            CommandKind::Confirm(Confirm {
                reservation: holdfast_engine::ReservationId(0),
                quantities: Some(vec![1]),
            }),
            reserve(1),
            CommandKind::Extend(Extend {
                reservation: holdfast_engine::ReservationId(1),
                ttl_ms: 10_000,
            }),
            CommandKind::Release(Release {
                reservation: holdfast_engine::ReservationId(1),
            }),
            reserve(3),
            CommandKind::ExpireUpTo(ExpireUpTo { up_to_ms: 500_000 }),
        ];
        for (i, kind) in kinds.into_iter().enumerate() {
            let index = i as u64 + 1;
            let at_ms = if i + 1 == 12 { 500_000 } else { 1_000 + index };
            let stamp = Stamp {
                index,
                now_ms: at_ms,
            };
            let command = Command {
                request_id: RequestId(index as u128),
                kind,
            };
            events.clear();
            let _ = engine.apply(stamp, &command, &mut events);
            encoded.clear();
            for event in &events {
                encoded.push(&engine, 3, index, at_ms, event);
            }
            assert_eq!(encoded.len(), events.len());
            for (seq, (event, bytes)) in events.iter().zip(encoded.iter()).enumerate() {
                let old = reference(&engine, 3, index, seq as u32, at_ms, event);
                assert_eq!(
                    bytes,
                    old.as_slice(),
                    "entry {index} event {seq}: {event:?}"
                );
                checked += 1;
            }
        }
        assert!(checked >= 10, "every kind of event met ({checked})");
    }

    fn reserve(quantity: i64) -> CommandKind {
        CommandKind::Reserve(Reserve {
            owner: "cart".into(),
            customer: "cust".into(),
            region: None,
            lines: vec![ReserveLine {
                sku: "SKU-1".into(),
                quantity,
                location: None,
            }],
            ttl_ms: 1_000,
            policy: FillPolicy::AllOrNothing,
            allow_split: false,
        })
    }

    proptest::proptest! {
        /// Reservation ids of any size are written as `ids` writes them.
        #[test]
        fn reservation_ids_are_the_wire_ids(shard: u32, id: u64) {
            let mut out = Vec::new();
            write(&mut out, (shard, 1, 0), 1, &Fields {
                reservation: Some((shard, id)),
                ..Fields::default()
            });
            let event = pb::Event::decode(out.as_slice()).unwrap();
            proptest::prop_assert_eq!(
                event.reservation_id,
                ids::reservation_to_wire(shard, holdfast_engine::ReservationId(id))
            );
        }
    }
}
