//! Encoding of engine commands into Raft log entries and back.
//!
//! A log entry (`pb::internal::LogEntry`) is one batch: the leader's time
//! stamp plus every command gathered for the shard in one driver loop
//! iteration. Encoding writes prost's bytes without building the message
//! (`encode`); decoding is prost's. Decoding is strict: an entry that does not decode, or that
//! carries an unknown version, is a `LogDecodeError` and stops the node
//! (design: "never applies garbage"); it is never skipped.

use crate::pb::internal as pb;
use crate::pb::internal::logged_command::Kind;
use crate::proto_write as w;
use holdfast_engine as engine;
use holdfast_engine::{Command, CommandKind, RequestId, ReservationId};
use prost::Message;
use thiserror::Error;

/// Version of the entry payload this build writes and reads.
pub const LOG_ENTRY_VERSION: u32 = 1;

/// Why a log entry could not be decoded.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum LogDecodeError {
    /// Not a valid protobuf message.
    #[error("log entry is not a valid LogEntry: {0}")]
    Malformed(String),
    /// Written by an unknown format version.
    #[error("log entry version {0} is not supported (this build reads {LOG_ENTRY_VERSION})")]
    Version(u32),
    /// A command inside is incomplete.
    #[error("log entry command {index}: {what}")]
    Command {
        /// Position of the command in the batch.
        index: usize,
        /// What is missing or wrong.
        what: &'static str,
    },
}

/// A decoded entry: its time stamp and commands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// Leader's time stamp, ms since the Unix epoch.
    pub stamp_ms: u64,
    /// Commands in apply order.
    pub commands: Vec<Command>,
}

/// Encodes a batch as entry bytes: prost's encoding of the `LogEntry`,
/// written straight from the commands. A reserve (nearly every command
/// under load) is written field by field, without the `LoggedReserve`
/// and its copied strings; the rarer kinds go through prost.
pub fn encode(stamp_ms: u64, commands: &[Command]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + commands.len() * ENCODED_COMMAND_BYTES_GUESS);
    w::varint(&mut out, 1, LOG_ENTRY_VERSION.into());
    w::varint(&mut out, 2, stamp_ms);
    for cmd in commands {
        w::message(&mut out, 3, |out| write_command(out, cmd));
    }
    out
}

/// A single-line reserve's usual size in an entry, to size the buffer once.
const ENCODED_COMMAND_BYTES_GUESS: usize = 80;

/// `LoggedCommand`'s fields.
fn write_command(out: &mut Vec<u8>, cmd: &Command) {
    w::bytes(out, 1, &cmd.request_id.0.to_le_bytes());
    match &cmd.kind {
        CommandKind::Reserve(r) => w::message(out, 2, |out| write_reserve(out, r)),
        _ => {
            if let Some(kind) = command_to_proto(cmd).kind {
                kind.encode(out);
            }
        }
    }
}

/// `LoggedReserve`'s fields.
fn write_reserve(out: &mut Vec<u8>, r: &engine::Reserve) {
    w::bytes(out, 1, r.owner.as_bytes());
    w::bytes(out, 2, r.customer.as_bytes());
    w::optional_bytes(out, 3, r.region.as_deref().map(str::as_bytes));
    for line in &r.lines {
        w::message(out, 4, |out| {
            w::bytes(out, 1, line.sku.as_bytes());
            w::int64(out, 2, line.quantity);
            w::optional_bytes(out, 3, line.location.as_deref().map(str::as_bytes));
        });
    }
    w::varint(out, 5, r.ttl_ms);
    w::varint(out, 6, policy_code(r.policy).into());
    w::varint(out, 7, r.allow_split.into());
}

fn policy_code(policy: engine::FillPolicy) -> u32 {
    match policy {
        engine::FillPolicy::AllOrNothing => 0,
        engine::FillPolicy::Partial => 1,
    }
}

/// Decodes entry bytes.
pub fn decode(bytes: &[u8]) -> Result<Batch, LogDecodeError> {
    let entry =
        pb::LogEntry::decode(bytes).map_err(|e| LogDecodeError::Malformed(e.to_string()))?;
    if entry.version != LOG_ENTRY_VERSION {
        return Err(LogDecodeError::Version(entry.version));
    }
    let commands = entry
        .commands
        .into_iter()
        .enumerate()
        .map(|(index, c)| {
            command_from_proto(c).map_err(|what| LogDecodeError::Command { index, what })
        })
        .collect::<Result<_, _>>()?;
    Ok(Batch {
        stamp_ms: entry.stamp_ms,
        commands,
    })
}

fn command_to_proto(cmd: &Command) -> pb::LoggedCommand {
    let kind = match &cmd.kind {
        CommandKind::Reserve(r) => Kind::Reserve(pb::LoggedReserve {
            owner: r.owner.clone(),
            customer: r.customer.clone(),
            region: r.region.clone(),
            lines: r
                .lines
                .iter()
                .map(|l| pb::LoggedLine {
                    sku: l.sku.clone(),
                    quantity: l.quantity,
                    location: l.location.clone(),
                })
                .collect(),
            ttl_ms: r.ttl_ms,
            policy: policy_code(r.policy),
            allow_split: r.allow_split,
        }),
        CommandKind::Confirm(c) => Kind::Confirm(pb::LoggedConfirm {
            reservation: c.reservation.0,
            has_quantities: c.quantities.is_some(),
            quantities: c.quantities.clone().unwrap_or_default(),
        }),
        CommandKind::Release(r) => Kind::Release(pb::LoggedRelease {
            reservation: r.reservation.0,
        }),
        CommandKind::Extend(e) => Kind::Extend(pb::LoggedExtend {
            reservation: e.reservation.0,
            ttl_ms: e.ttl_ms,
        }),
        CommandKind::AdjustStock(a) => Kind::AdjustStock(pb::LoggedAdjustStock {
            sku: a.sku.clone(),
            location: a.location.clone(),
            delta: a.delta,
            expected_on_hand: a.expected_on_hand,
        }),
        CommandKind::UpsertLocation(u) => Kind::UpsertLocation(pb::LoggedUpsertLocation {
            location: u.location.clone(),
            region: u.region.clone(),
            priority: u.priority,
        }),
        CommandKind::SetPolicy(p) => {
            let (limit_change, limit_max_units, limit_campaign) = match p.customer_limit {
                engine::LimitChange::Keep => (0, 0, 0),
                engine::LimitChange::Clear => (1, 0, 0),
                engine::LimitChange::Set(l) => (2, l.max_units, l.campaign),
            };
            Kind::SetPolicy(pb::LoggedSetPolicy {
                sku: p.sku.clone(),
                location: p.location.clone(),
                safety_stock: p.safety_stock,
                backorder_allowance: p.backorder_allowance,
                limit_change,
                limit_max_units,
                limit_campaign,
            })
        }
        CommandKind::ExpireUpTo(e) => Kind::ExpireUpTo(pb::LoggedExpireUpTo {
            up_to_ms: e.up_to_ms,
        }),
    };
    pb::LoggedCommand {
        request_id: cmd.request_id.0.to_le_bytes().to_vec(),
        kind: Some(kind),
    }
}

fn command_from_proto(c: pb::LoggedCommand) -> Result<Command, &'static str> {
    let id: [u8; 16] = c
        .request_id
        .as_slice()
        .try_into()
        .map_err(|_| "request id is not 16 bytes")?;
    let kind = match c.kind.ok_or("no command kind")? {
        Kind::Reserve(r) => CommandKind::Reserve(engine::Reserve {
            owner: r.owner,
            customer: r.customer,
            region: r.region,
            lines: r
                .lines
                .into_iter()
                .map(|l| engine::ReserveLine {
                    sku: l.sku,
                    quantity: l.quantity,
                    location: l.location,
                })
                .collect(),
            ttl_ms: r.ttl_ms,
            policy: match r.policy {
                0 => engine::FillPolicy::AllOrNothing,
                1 => engine::FillPolicy::Partial,
                _ => return Err("unknown fill policy"),
            },
            allow_split: r.allow_split,
        }),
        Kind::Confirm(c) => CommandKind::Confirm(engine::Confirm {
            reservation: ReservationId(c.reservation),
            quantities: c.has_quantities.then_some(c.quantities),
        }),
        Kind::Release(r) => CommandKind::Release(engine::Release {
            reservation: ReservationId(r.reservation),
        }),
        Kind::Extend(e) => CommandKind::Extend(engine::Extend {
            reservation: ReservationId(e.reservation),
            ttl_ms: e.ttl_ms,
        }),
        Kind::AdjustStock(a) => CommandKind::AdjustStock(engine::AdjustStock {
            sku: a.sku,
            location: a.location,
            delta: a.delta,
            expected_on_hand: a.expected_on_hand,
        }),
        Kind::UpsertLocation(u) => CommandKind::UpsertLocation(engine::UpsertLocation {
            location: u.location,
            region: u.region,
            priority: u.priority,
        }),
        Kind::SetPolicy(p) => CommandKind::SetPolicy(engine::SetPolicy {
            sku: p.sku,
            location: p.location,
            safety_stock: p.safety_stock,
            backorder_allowance: p.backorder_allowance,
            customer_limit: match p.limit_change {
                0 => engine::LimitChange::Keep,
                1 => engine::LimitChange::Clear,
                2 => engine::LimitChange::Set(engine::CustomerLimit {
                    max_units: p.limit_max_units,
                    campaign: p.limit_campaign,
                }),
                _ => return Err("unknown limit change"),
            },
        }),
        Kind::ExpireUpTo(e) => CommandKind::ExpireUpTo(engine::ExpireUpTo {
            up_to_ms: e.up_to_ms,
        }),
    };
    Ok(Command {
        request_id: RequestId(u128::from_le_bytes(id)),
        kind,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> Vec<Command> {
        vec![
            Command {
                request_id: RequestId(u128::MAX - 7),
                kind: CommandKind::Reserve(engine::Reserve {
                    owner: "cart".into(),
                    customer: "cust".into(),
                    region: Some("eu".into()),
                    lines: vec![engine::ReserveLine {
                        sku: "A".into(),
                        quantity: 3,
                        location: None,
                    }],
                    ttl_ms: 60_000,
                    policy: engine::FillPolicy::Partial,
                    allow_split: true,
                }),
            },
            Command {
                request_id: RequestId(2),
                kind: CommandKind::Confirm(engine::Confirm {
                    reservation: ReservationId(9),
                    quantities: Some(vec![]),
                }),
            },
            Command {
                request_id: RequestId(3),
                kind: CommandKind::SetPolicy(engine::SetPolicy {
                    sku: "A".into(),
                    location: None,
                    safety_stock: None,
                    backorder_allowance: Some(4),
                    customer_limit: engine::LimitChange::Set(engine::CustomerLimit {
                        max_units: 2,
                        campaign: 7,
                    }),
                }),
            },
        ]
    }

    /// The encoder `encode` replaced: the whole `LogEntry` built, then
    /// encoded by prost. The bytes must not change (they are the log).
    fn reference(stamp_ms: u64, commands: &[Command]) -> Vec<u8> {
        pb::LogEntry {
            version: LOG_ENTRY_VERSION,
            stamp_ms,
            commands: commands.iter().map(command_to_proto).collect(),
        }
        .encode_to_vec()
    }

    fn text() -> impl Strategy<Value = String> {
        proptest::string::string_regex(".{0,12}").expect("regex")
    }

    fn any_command() -> impl Strategy<Value = Command> {
        let line = (text(), any::<i64>(), proptest::option::of(text())).prop_map(
            |(sku, quantity, location)| engine::ReserveLine {
                sku,
                quantity,
                location,
            },
        );
        let reserve = (
            (text(), text(), proptest::option::of(text())),
            proptest::collection::vec(line, 0..4),
            (any::<u64>(), any::<bool>(), any::<bool>()),
        )
            .prop_map(
                |((owner, customer, region), lines, (ttl_ms, partial, allow_split))| {
                    CommandKind::Reserve(engine::Reserve {
                        owner,
                        customer,
                        region,
                        lines,
                        ttl_ms,
                        policy: if partial {
                            engine::FillPolicy::Partial
                        } else {
                            engine::FillPolicy::AllOrNothing
                        },
                        allow_split,
                    })
                },
            );
        let other = prop_oneof![
            (
                any::<u64>(),
                proptest::option::of(proptest::collection::vec(any::<i64>(), 0..3))
            )
                .prop_map(|(r, quantities)| CommandKind::Confirm(engine::Confirm {
                    reservation: ReservationId(r),
                    quantities,
                })),
            any::<u64>().prop_map(|r| CommandKind::Release(engine::Release {
                reservation: ReservationId(r)
            })),
            (
                text(),
                text(),
                any::<i64>(),
                proptest::option::of(any::<i64>())
            )
                .prop_map(|(sku, location, delta, expected_on_hand)| {
                    CommandKind::AdjustStock(engine::AdjustStock {
                        sku,
                        location,
                        delta,
                        expected_on_hand,
                    })
                }),
            any::<u64>()
                .prop_map(|up_to_ms| CommandKind::ExpireUpTo(engine::ExpireUpTo { up_to_ms })),
        ];
        (any::<u128>(), prop_oneof![3 => reserve, 1 => other]).prop_map(|(id, kind)| Command {
            request_id: RequestId(id),
            kind,
        })
    }

    proptest! {
        /// Whatever the commands, the entry's bytes are the old encoder's,
        /// and they decode to the same commands.
        #[test]
        fn bytes_are_the_old_encoders(
            stamp_ms: u64,
            commands in proptest::collection::vec(any_command(), 0..6),
        ) {
            let bytes = encode(stamp_ms, &commands);
            prop_assert_eq!(&bytes, &reference(stamp_ms, &commands));
            prop_assert_eq!(decode(&bytes), Ok(Batch { stamp_ms, commands }));
        }
    }

    #[test]
    fn round_trip() {
        let commands = sample();
        let bytes = encode(123, &commands);
        assert_eq!(
            decode(&bytes),
            Ok(Batch {
                stamp_ms: 123,
                commands
            })
        );
    }

    #[test]
    fn garbage_is_an_error_never_a_panic() {
        assert!(matches!(
            decode(&[0xff, 0xff, 0xff]),
            Err(LogDecodeError::Malformed(_))
        ));
        let mut entry = pb::LogEntry::decode(encode(1, &sample()).as_slice()).unwrap();
        entry.version = 99;
        assert_eq!(
            decode(&entry.encode_to_vec()),
            Err(LogDecodeError::Version(99))
        );
        entry.version = LOG_ENTRY_VERSION;
        entry.commands[0].request_id.pop();
        assert!(matches!(
            decode(&entry.encode_to_vec()),
            Err(LogDecodeError::Command { index: 0, .. })
        ));
    }
}
