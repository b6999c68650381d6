//! Protobuf fields written by hand, for the hot encoders (log entries,
//! kept events) that would otherwise build a prost message, allocating
//! every string in it, only to encode it and throw it away.
//!
//! The bytes are the ones prost writes for the same message, because the
//! rules are proto3's as prost applies them: callers write fields in
//! field-number order; a scalar or string equal to its default (0, false,
//! empty) is left out; an `optional` field or a message field is written
//! whenever it is present, even when its value is the default. Each
//! encoder that uses this module has a test comparing its bytes with
//! prost's.

use prost::encoding::{encode_key, encode_varint, WireType};

/// A `uint64`/`uint32`/`bool` field (left out when 0).
pub fn varint(out: &mut Vec<u8>, tag: u32, value: u64) {
    if value != 0 {
        encode_key(tag, WireType::Varint, out);
        encode_varint(value, out);
    }
}

/// An `int64` field (left out when 0): the two's-complement bits as a
/// varint.
pub fn int64(out: &mut Vec<u8>, tag: u32, value: i64) {
    varint(out, tag, value as u64);
}

/// An enum or `int32` field (left out when 0): sign-extended to 64 bits.
pub fn int32(out: &mut Vec<u8>, tag: u32, value: i32) {
    varint(out, tag, value as i64 as u64);
}

/// An `optional uint64` field: written when present.
pub fn optional_varint(out: &mut Vec<u8>, tag: u32, value: Option<u64>) {
    if let Some(value) = value {
        encode_key(tag, WireType::Varint, out);
        encode_varint(value, out);
    }
}

/// A `string` or `bytes` field (left out when empty).
pub fn bytes(out: &mut Vec<u8>, tag: u32, value: &[u8]) {
    if !value.is_empty() {
        length_delimited(out, tag, value);
    }
}

/// An `optional string` field: written when present, even if empty.
pub fn optional_bytes(out: &mut Vec<u8>, tag: u32, value: Option<&[u8]>) {
    if let Some(value) = value {
        length_delimited(out, tag, value);
    }
}

fn length_delimited(out: &mut Vec<u8>, tag: u32, value: &[u8]) {
    encode_key(tag, WireType::LengthDelimited, out);
    encode_varint(value.len() as u64, out);
    out.extend_from_slice(value);
}

/// A message field (also one element of a repeated message field): always
/// written, its body by `body`. The body is written in place and its
/// length put in front afterwards (moving the body when the length takes
/// more than one byte), so nothing is measured twice.
pub fn message(out: &mut Vec<u8>, tag: u32, body: impl FnOnce(&mut Vec<u8>)) {
    encode_key(tag, WireType::LengthDelimited, out);
    let start = out.len();
    out.push(0);
    body(out);
    let len = out.len() - start - 1;
    if len < 0x80 {
        out[start] = len as u8;
        return;
    }
    let mut prefix = Vec::with_capacity(10);
    encode_varint(len as u64, &mut prefix);
    out.splice(start..start + 1, prefix);
}

/// `n` in decimal, into the end of `buf`; returns where the digits start.
/// For ids on the wire without a formatter's allocation.
pub fn decimal(mut n: u64, buf: &mut [u8; 20]) -> usize {
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return at;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    /// A message of every field kind this module writes, encoded by prost.
    #[derive(Clone, PartialEq, prost::Message)]
    struct Sample {
        #[prost(uint64, tag = "1")]
        a: u64,
        #[prost(int64, tag = "2")]
        b: i64,
        #[prost(int32, tag = "3")]
        c: i32,
        #[prost(uint64, optional, tag = "4")]
        d: Option<u64>,
        #[prost(string, tag = "5")]
        e: String,
        #[prost(string, optional, tag = "6")]
        f: Option<String>,
        #[prost(message, repeated, tag = "7")]
        g: Vec<Sample>,
    }

    fn by_hand(s: &Sample, out: &mut Vec<u8>) {
        varint(out, 1, s.a);
        int64(out, 2, s.b);
        int32(out, 3, s.c);
        optional_varint(out, 4, s.d);
        bytes(out, 5, s.e.as_bytes());
        optional_bytes(out, 6, s.f.as_deref().map(str::as_bytes));
        for g in &s.g {
            message(out, 7, |out| by_hand(g, out));
        }
    }

    fn sample() -> impl proptest::strategy::Strategy<Value = Sample> {
        use proptest::prelude::*;
        let leaf = (
            any::<u64>(),
            any::<i64>(),
            any::<i32>(),
            any::<Option<u64>>(),
            ".{0,3}",
            proptest::option::of(".{0,200}"),
        )
            .prop_map(|(a, b, c, d, e, f)| Sample {
                a,
                b,
                c,
                d,
                e,
                f,
                g: Vec::new(),
            });
        leaf.prop_recursive(2, 8, 4, |inner| {
            (inner.clone(), proptest::collection::vec(inner, 0..4)).prop_map(|(mut s, g)| {
                s.g = g;
                s
            })
        })
    }

    proptest::proptest! {
        /// Whatever the values (defaults, negatives, long strings, nested
        /// messages of more than 127 bytes), the bytes are prost's.
        #[test]
        fn writes_what_prost_writes(s in sample()) {
            let mut out = Vec::new();
            by_hand(&s, &mut out);
            proptest::prop_assert_eq!(out, s.encode_to_vec());
        }

        #[test]
        fn decimal_is_the_formatted_number(n: u64) {
            let mut buf = [0; 20];
            let at = decimal(n, &mut buf);
            let formatted = n.to_string();
            proptest::prop_assert_eq!(&buf[at..], formatted.as_bytes());
        }
    }
}
