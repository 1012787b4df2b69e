//! Every table and key format of the embedded store, in one place.
//!
//! Keys are big-endian so that byte order is numeric order and a mailbox's
//! rows are one contiguous range. A mid is stored with its sign bit flipped
//! (`mid ^ i64::MIN`), so negative mids sort below positive ones.
//!
//! | table | key | value |
//! |---|---|---|
//! | `mbox` | mid (8), seq u32 (4) | version 1 (1), ts_ms i64 (8), op i32 (4), from i64 (8), id length (1), id, body |
//! | `meta` | mid (8) | top u32, first u32, read u32 |
//! | `idem` | mid (8), id | seq u32, appended at ms i64 |
//! | `acks` | mid (8), device key | seq u32, acked at ms i64 |
//! | `by_time` | appended at s u32, mid (8), seq u32 | the id of its `idem` row; empty when the append kept none ([`crate::Entry::dedupe`]) |
//! | `groups` | gid (8), mid (8) | nothing (`()`) |
//! | `mutes` | mid (8), scope | until, Unix ms (`Option<i64>`, `None` until lifted) |
//! | `db` | `"epoch"` | 8 ASCII alphanumerics |
//! | `db` | `"idem_swept"` | the last `by_time` key the idempotency sweep passed |
//!
//! `by_time` lists every append, oldest first: the idempotency sweep walks it
//! to expire `idem` rows, the age sweep to remove old messages (and the
//! `by_time` rows themselves).
//!
//! A gid is stored like a mid, so a group's members are one contiguous range
//! in ascending order, and a group with no row does not exist.

use bytes::Bytes;
use redb::TableDefinition;

use crate::{Entry, MailboxError, MsgId, Stored};

/// (mid, seq) -> the message.
pub(super) const MBOX: TableDefinition<&[u8; 12], &[u8]> = TableDefinition::new("mbox");
/// mid -> [`Meta`].
pub(super) const META: TableDefinition<&[u8; 8], &[u8; 12]> = TableDefinition::new("meta");
/// (mid, id) -> (seq, appended at).
pub(super) const IDEM: TableDefinition<&[u8], &[u8; 12]> = TableDefinition::new("idem");
/// (mid, device key) -> (ack, acked at).
pub(super) const ACKS: TableDefinition<&[u8], &[u8; 12]> = TableDefinition::new("acks");
/// (appended at, mid, seq) -> the id of its `idem` row, or empty.
pub(super) const BY_TIME: TableDefinition<&[u8; 16], &[u8]> = TableDefinition::new("by_time");
/// (gid, mid) -> (): group membership.
pub(super) const GROUPS: TableDefinition<&[u8; 16], ()> = TableDefinition::new("groups");
/// (mid, scope) -> until (Unix ms) or `None` until lifted.
pub(super) const MUTES: TableDefinition<&[u8], Option<i64>> = TableDefinition::new("mutes");
/// Store-wide values.
pub(super) const DB: TableDefinition<&str, &[u8]> = TableDefinition::new("db");

/// `db` key of the epoch.
pub(super) const EPOCH: &str = "epoch";
/// `db` key of the idempotency sweep's position.
pub(super) const IDEM_SWEPT: &str = "idem_swept";

const VERSION: u8 = 1;
/// Bytes of an `mbox` value before the id.
const HEAD: usize = 1 + 8 + 4 + 8 + 1;

pub(super) fn mid_key(mid: i64) -> [u8; 8] {
    ((mid as u64) ^ (1 << 63)).to_be_bytes()
}

fn mid_from(bytes: &[u8]) -> i64 {
    let raw = u64::from_be_bytes(bytes[..8].try_into().expect("8 bytes"));
    (raw ^ (1 << 63)) as i64
}

pub(super) fn mbox_key(mid: i64, seq: u32) -> [u8; 12] {
    let mut key = [0; 12];
    key[..8].copy_from_slice(&mid_key(mid));
    key[8..].copy_from_slice(&seq.to_be_bytes());
    key
}

pub(super) fn mbox_seq(key: &[u8; 12]) -> u32 {
    u32::from_be_bytes(key[8..].try_into().expect("4 bytes"))
}

/// `mid` followed by a variable part: `idem` and `acks` keys.
pub(super) fn mid_and(mid: i64, rest: &[u8]) -> Vec<u8> {
    let mut key = Vec::with_capacity(8 + rest.len());
    key.extend_from_slice(&mid_key(mid));
    key.extend_from_slice(rest);
    key
}

/// A `groups` key.
pub(super) fn member_key(gid: i64, mid: i64) -> [u8; 16] {
    let mut key = [0; 16];
    key[..8].copy_from_slice(&mid_key(gid));
    key[8..].copy_from_slice(&mid_key(mid));
    key
}

/// The mid of a `groups` key.
pub(super) fn member_of(key: &[u8; 16]) -> i64 {
    mid_from(&key[8..])
}

pub(super) fn by_time_key(at_s: u32, mid: i64, seq: u32) -> [u8; 16] {
    let mut key = [0; 16];
    key[..4].copy_from_slice(&at_s.to_be_bytes());
    key[4..12].copy_from_slice(&mid_key(mid));
    key[12..].copy_from_slice(&seq.to_be_bytes());
    key
}

/// (mid, seq) of a `by_time` key.
pub(super) fn by_time_parts(key: &[u8; 16]) -> (i64, u32) {
    let seq = u32::from_be_bytes(key[12..].try_into().expect("4 bytes"));
    (mid_from(&key[4..12]), seq)
}

/// A mailbox's bounds and read position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Meta {
    pub(super) top: u32,
    pub(super) first: u32,
    pub(super) read: u32,
}

impl Default for Meta {
    fn default() -> Self {
        Meta {
            top: 0,
            first: 1,
            read: 0,
        }
    }
}

impl Meta {
    pub(super) fn encode(&self) -> [u8; 12] {
        let mut value = [0; 12];
        value[..4].copy_from_slice(&self.top.to_be_bytes());
        value[4..8].copy_from_slice(&self.first.to_be_bytes());
        value[8..].copy_from_slice(&self.read.to_be_bytes());
        value
    }

    pub(super) fn decode(value: &[u8; 12]) -> Meta {
        let word = |i: usize| u32::from_be_bytes(value[i..i + 4].try_into().expect("4 bytes"));
        Meta {
            top: word(0),
            first: word(4),
            read: word(8),
        }
    }
}

/// A (seq, Unix ms) pair: `idem` and `acks` values.
pub(super) fn seq_at(seq: u32, at_ms: i64) -> [u8; 12] {
    let mut value = [0; 12];
    value[..4].copy_from_slice(&seq.to_be_bytes());
    value[4..].copy_from_slice(&at_ms.to_be_bytes());
    value
}

pub(super) fn seq_at_parts(value: &[u8; 12]) -> (u32, i64) {
    (
        u32::from_be_bytes(value[..4].try_into().expect("4 bytes")),
        i64::from_be_bytes(value[4..].try_into().expect("8 bytes")),
    )
}

pub(super) fn encode_entry(entry: &Entry) -> Vec<u8> {
    let id = entry.id.as_str().as_bytes();
    let mut value = Vec::with_capacity(HEAD + id.len() + entry.body.len());
    value.push(VERSION);
    value.extend_from_slice(&entry.ts_ms.to_be_bytes());
    value.extend_from_slice(&entry.op.to_be_bytes());
    value.extend_from_slice(&entry.from.to_be_bytes());
    // MsgId::MAX_LEN is 64, so the length fits a byte.
    value.push(id.len() as u8);
    value.extend_from_slice(id);
    value.extend_from_slice(&entry.body);
    value
}

pub(super) fn decode_stored(seq: u32, value: &[u8]) -> Result<Stored, MailboxError> {
    let corrupt = |what: &str| MailboxError::Corrupt(format!("message {seq}: {what}"));
    if value.len() < HEAD {
        return Err(corrupt("truncated"));
    }
    if value[0] != VERSION {
        return Err(corrupt("unknown format version"));
    }
    let ts_ms = i64::from_be_bytes(value[1..9].try_into().expect("8 bytes"));
    let op = i32::from_be_bytes(value[9..13].try_into().expect("4 bytes"));
    let from = i64::from_be_bytes(value[13..21].try_into().expect("8 bytes"));
    let id_end = HEAD + usize::from(value[21]);
    let id = value
        .get(HEAD..id_end)
        .and_then(|id| std::str::from_utf8(id).ok())
        .and_then(|id| MsgId::parse(id).ok())
        .ok_or_else(|| corrupt("bad message id"))?;
    Ok(Stored {
        seq,
        id,
        ts_ms,
        op,
        from,
        body: Bytes::copy_from_slice(&value[id_end..]),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mids_sort_numerically_and_round_trip() {
        let mids = [i64::MIN, -2, -1, 0, 1, 2, i64::MAX];
        for pair in mids.windows(2) {
            assert!(mid_key(pair[0]) < mid_key(pair[1]), "{pair:?}");
        }
        for mid in mids {
            assert_eq!(by_time_parts(&by_time_key(7, mid, 9)), (mid, 9));
        }
        assert!(mbox_key(1, u32::MAX) < mbox_key(2, 0));
        assert_eq!(mbox_seq(&mbox_key(-5, 42)), 42);
        assert!(member_key(1, i64::MAX) < member_key(2, i64::MIN));
        assert!(member_key(1, -1) < member_key(1, 0));
        assert_eq!(member_of(&member_key(-3, i64::MIN)), i64::MIN);
    }

    #[test]
    fn entries_round_trip() {
        let entry = Entry {
            mid: 3,
            id: MsgId::parse("abc").unwrap(),
            op: 1000,
            from: -7,
            ts_ms: 1_700_000_000_123,
            body: Bytes::from_static(b"\x00\xffhello"),
            dedupe: true,
        };
        let stored = decode_stored(5, &encode_entry(&entry)).unwrap();
        assert_eq!(stored, Stored::new(5, entry));
        assert!(decode_stored(5, &[1, 2, 3]).is_err());
    }

    #[test]
    fn meta_round_trips() {
        let meta = Meta {
            top: 9,
            first: 4,
            read: 7,
        };
        assert_eq!(Meta::decode(&meta.encode()), meta);
        assert_eq!(seq_at_parts(&seq_at(3, -1)), (3, -1));
    }
}
