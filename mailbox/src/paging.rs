//! How every store cuts a page: at most `limit` entries and `max_bytes` of
//! bodies, but never an empty page while messages remain (a single message
//! larger than `max_bytes` would otherwise stall a sync forever), and when
//! `more` is set.

use std::cmp::{max, min};

use crate::Stored;

/// Admits entries into a page, in read order.
#[derive(Debug)]
pub(crate) struct PageCut {
    limit: usize,
    max_bytes: usize,
    taken: usize,
    bytes: usize,
}

impl PageCut {
    pub(crate) fn new(limit: usize, max_bytes: usize) -> PageCut {
        PageCut {
            limit,
            max_bytes,
            taken: 0,
            bytes: 0,
        }
    }

    /// Whether a message with a body of `len` bytes still fits; if it does,
    /// it is counted in.
    pub(crate) fn admit(&mut self, len: usize) -> bool {
        if self.taken >= self.limit || (self.taken > 0 && self.bytes + len > self.max_bytes) {
            return false;
        }
        self.taken += 1;
        self.bytes += len;
        true
    }
}

/// `more` of a forward read from `after` that returned `entries`.
pub(crate) fn more_after(after: u32, first: u32, top: u32, entries: &[Stored]) -> bool {
    let last = entries
        .last()
        .map_or(max(after, first.saturating_sub(1)), |e| e.seq);
    last < top
}

/// `more` of a backward read below `before` that returned `entries`.
pub(crate) fn more_before(before: u32, first: u32, top: u32, entries: &[Stored]) -> bool {
    let lowest = entries
        .last()
        .map_or(min(u64::from(before), u64::from(top) + 1), |e| {
            u64::from(e.seq)
        });
    lowest > u64::from(first)
}
