//! A vector that grows by fixed-size chunks and never moves what it holds.
//!
//! Why: a shard can hold millions of pending reservations. In one `Vec`,
//! each doubling copied every reservation into a new allocation and
//! touched twice the memory, on the apply thread, at once: a stall of a
//! few hundred milliseconds at two million reservations, on every replica
//! at the same log index (measured under `ReserveBatch` load; see
//! docs/performance.md). In chunks, growing costs one allocation of
//! `CHUNK` elements, whose pages are touched as they fill.

/// Elements per chunk: a few MB of reservation slots, so a chunk is a
/// small step of memory and the chunk list stays short.
const CHUNK: usize = 1 << 15;

/// Elements in chunks of [`CHUNK`]; indexed like a slice.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ChunkedVec<T> {
    chunks: Vec<Vec<T>>,
    len: usize,
}

impl<T> Default for ChunkedVec<T> {
    fn default() -> Self {
        ChunkedVec {
            chunks: Vec::new(),
            len: 0,
        }
    }
}

impl<T> ChunkedVec<T> {
    /// Elements held.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Elements the chunks have room for (for memory accounting).
    pub(crate) fn capacity(&self) -> usize {
        self.chunks.iter().map(Vec::capacity).sum()
    }

    /// Appends `value`.
    pub(crate) fn push(&mut self, value: T) {
        if self.len % CHUNK == 0 {
            self.chunks.push(Vec::with_capacity(CHUNK));
        }
        self.chunks
            .last_mut()
            .expect("a chunk with room")
            .push(value);
        self.len += 1;
    }

    /// The element at `index`, if any.
    pub(crate) fn get(&self, index: usize) -> Option<&T> {
        self.chunks.get(index / CHUNK)?.get(index % CHUNK)
    }

    /// The element at `index` for update, if any.
    pub(crate) fn get_mut(&mut self, index: usize) -> Option<&mut T> {
        self.chunks.get_mut(index / CHUNK)?.get_mut(index % CHUNK)
    }

    /// Elements from `start` on, in order (nothing if `start` is past the
    /// end).
    pub(crate) fn iter_from(&self, start: usize) -> impl Iterator<Item = &T> {
        let first = self.chunks.get(start / CHUNK).into_iter();
        let skip = start % CHUNK;
        let rest = self.chunks.iter().skip(start / CHUNK + 1);
        first
            .flat_map(move |c| c.get(skip..).unwrap_or_default())
            .chain(rest.flatten())
    }

    /// Every element, in order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &T> {
        self.chunks.iter().flatten()
    }
}

impl<T> std::ops::Index<usize> for ChunkedVec<T> {
    type Output = T;

    fn index(&self, index: usize) -> &T {
        self.get(index).expect("index within the chunked vector")
    }
}

impl<T> std::ops::IndexMut<usize> for ChunkedVec<T> {
    fn index_mut(&mut self, index: usize) -> &mut T {
        self.get_mut(index)
            .expect("index within the chunked vector")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// Indexing, iteration and iteration from any start agree with a
        /// plain vector, across chunk boundaries.
        #[test]
        fn behaves_as_a_vec(len in 0usize..3 * CHUNK, start in 0usize..4 * CHUNK) {
            let mut chunked = ChunkedVec::default();
            let plain: Vec<usize> = (0..len).collect();
            for &v in &plain {
                chunked.push(v);
            }
            proptest::prop_assert_eq!(chunked.len(), len);
            proptest::prop_assert!(chunked.capacity() >= len);
            proptest::prop_assert_eq!(chunked.get(start), plain.get(start));
            proptest::prop_assert!(chunked.iter().eq(plain.iter()));
            proptest::prop_assert!(chunked
                .iter_from(start)
                .eq(plain.get(start..).unwrap_or_default().iter()));
            if let Some(v) = chunked.get_mut(start) {
                *v += 1;
                proptest::prop_assert_eq!(chunked[start], plain[start] + 1);
            }
        }
    }
}
