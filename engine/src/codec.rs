//! Little-endian byte writer and a bounds-checked reader for snapshots.
//!
//! The reader never panics and never allocates more than the remaining input
//! could describe: every length is checked against what is left, so a
//! corrupt or hostile snapshot yields an error, not an abort or an OOM.

use thiserror::Error;

/// Why bytes could not be decoded.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum DecodeError {
    /// The input ended inside a value.
    #[error("snapshot truncated: needed {needed} more bytes at offset {offset}")]
    Truncated {
        /// Where the value started.
        offset: usize,
        /// Bytes missing.
        needed: usize,
    },
    /// A value is out of its domain (bad tag, id out of range, ...).
    #[error("snapshot corrupt at offset {offset}: {what}")]
    Corrupt {
        /// Where it was found.
        offset: usize,
        /// What is wrong.
        what: String,
    },
}

pub(crate) struct Writer {
    pub(crate) buf: Vec<u8>,
}

impl Writer {
    pub(crate) fn new() -> Self {
        Writer { buf: Vec::new() }
    }

    pub(crate) fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }

    pub(crate) fn u16(&mut self, v: u16) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    pub(crate) fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    pub(crate) fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    pub(crate) fn i64(&mut self, v: i64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    pub(crate) fn u128(&mut self, v: u128) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    pub(crate) fn str(&mut self, s: &str) {
        self.u32(s.len() as u32);
        self.buf.extend_from_slice(s.as_bytes());
    }
}

pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.pos == self.buf.len()
    }

    pub(crate) fn corrupt(&self, what: impl Into<String>) -> DecodeError {
        DecodeError::Corrupt {
            offset: self.pos,
            what: what.into(),
        }
    }

    pub(crate) fn bytes(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let left = self.buf.len() - self.pos;
        if n > left {
            return Err(DecodeError::Truncated {
                offset: self.pos,
                needed: n - left,
            });
        }
        let out = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.bytes(N)?);
        Ok(out)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.array::<1>()?[0])
    }

    pub(crate) fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_le_bytes(self.array()?))
    }

    pub(crate) fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    pub(crate) fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    pub(crate) fn i64(&mut self) -> Result<i64, DecodeError> {
        Ok(i64::from_le_bytes(self.array()?))
    }

    pub(crate) fn u128(&mut self) -> Result<u128, DecodeError> {
        Ok(u128::from_le_bytes(self.array()?))
    }

    pub(crate) fn bool(&mut self) -> Result<bool, DecodeError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            v => Err(self.corrupt(format!("boolean byte {v}"))),
        }
    }

    pub(crate) fn str(&mut self, max: usize) -> Result<&'a str, DecodeError> {
        let len = self.u32()? as usize;
        if len > max {
            return Err(self.corrupt(format!("string of {len} bytes exceeds {max}")));
        }
        let bytes = self.bytes(len)?;
        std::str::from_utf8(bytes).map_err(|_| self.corrupt("string is not UTF-8"))
    }

    /// A count of items each at least `min_item_bytes` long: refuses counts
    /// the remaining input cannot hold, before anything is allocated.
    pub(crate) fn count(&mut self, min_item_bytes: usize) -> Result<usize, DecodeError> {
        let n = self.u64()?;
        let left = (self.buf.len() - self.pos) as u64;
        if n.saturating_mul(min_item_bytes.max(1) as u64) > left {
            return Err(self.corrupt(format!("count {n} exceeds what {left} bytes can hold")));
        }
        Ok(n as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_truncation() {
        let mut w = Writer::new();
        w.u64(7);
        w.str("héllo");
        w.i64(-3);
        let mut r = Reader::new(&w.buf);
        assert_eq!(r.u64(), Ok(7));
        assert_eq!(r.str(16), Ok("héllo"));
        assert_eq!(r.i64(), Ok(-3));
        assert!(r.is_empty());
        let mut short = Reader::new(&w.buf[..10]);
        assert_eq!(short.u64(), Ok(7));
        assert!(matches!(short.str(16), Err(DecodeError::Truncated { .. })));
    }

    #[test]
    fn absurd_count_is_refused_without_allocating() {
        let mut w = Writer::new();
        w.u64(u64::MAX);
        let mut r = Reader::new(&w.buf);
        assert!(matches!(r.count(8), Err(DecodeError::Corrupt { .. })));
    }
}
