//! The values a mailbox takes and hands out: message ids, epochs, entries,
//! pages and cursors, and [`complete`], the rule that tells a syncing client
//! whether it missed anything for good; and a user's [`Mute`].

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use bytes::Bytes;
use rand::distr::Alphanumeric;
use rand::Rng;

use crate::error::{EpochError, MsgIdError};

/// The highest seq a mailbox hands out: seqs travel in goim's int32 header
/// `seq`, so they stay below 2^31.
pub const MAX_SEQ: u32 = i32::MAX as u32;

/// A message id: the idempotency key of an append, unique per mailbox within
/// the idempotency window.
///
/// It is a string because the HTTP surface lets the backend choose it
/// (`id=`), and it comes back byte-exact in replies and history. rim's own
/// ids are UUIDv7s in their 36-character text form ([`MsgId::generate`]).
/// Accepted: 1 to [`MsgId::MAX_LEN`] bytes of printable ASCII without
/// spaces (`!` to `~`), so an id is safe in JSON, logs and query strings
/// once percent-decoded.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MsgId(Box<str>);

impl MsgId {
    /// The longest id accepted, in bytes.
    pub const MAX_LEN: usize = 64;

    /// Checks and wraps an id given by a backend or client.
    pub fn parse(id: &str) -> Result<MsgId, MsgIdError> {
        if id.is_empty() {
            return Err(MsgIdError::Empty);
        }
        if id.len() > Self::MAX_LEN {
            return Err(MsgIdError::TooLong(id.len()));
        }
        if let Some(at) = id.bytes().position(|b| !b.is_ascii_graphic()) {
            return Err(MsgIdError::InvalidByte(at));
        }
        Ok(MsgId(Box::from(id)))
    }

    /// A fresh id: a UUIDv7 (time-ordered) in its hyphenated text form.
    pub fn generate() -> MsgId {
        MsgId(Box::from(uuid::Uuid::now_v7().hyphenated().to_string()))
    }

    /// The id as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for MsgId {
    type Err = MsgIdError;

    fn from_str(id: &str) -> Result<MsgId, MsgIdError> {
        MsgId::parse(id)
    }
}

impl fmt::Display for MsgId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for MsgId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MsgId({:?})", &*self.0)
    }
}

/// The id of a mailbox history: 8 random ASCII letters and digits. Seqs are
/// only comparable within one epoch; a new epoch means the store lost (or
/// never had) the history a client's cursor points into.
///
/// The embedded store keeps one epoch per database file, the memory store
/// one per process. The Redis store keeps one per mailbox, drawn when the
/// mailbox is first read or written, and drawn again when Redis lost the
/// mailbox's state (or it outlived `meta_ttl`).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Epoch([u8; Epoch::LEN]);

impl Epoch {
    /// Length of an epoch, in bytes (and characters).
    pub const LEN: usize = 8;

    /// A new random epoch.
    pub fn random() -> Epoch {
        let mut rng = rand::rng();
        Epoch(std::array::from_fn(|_| rng.sample(Alphanumeric)))
    }

    /// Reads a stored epoch.
    pub fn from_bytes(bytes: &[u8]) -> Result<Epoch, EpochError> {
        let bytes: [u8; Epoch::LEN] = bytes.try_into().map_err(|_| EpochError)?;
        if !bytes.iter().all(u8::is_ascii_alphanumeric) {
            return Err(EpochError);
        }
        Ok(Epoch(bytes))
    }

    /// The epoch's bytes.
    pub fn as_bytes(&self) -> &[u8; Epoch::LEN] {
        &self.0
    }

    /// The epoch as text, as clients see it.
    pub fn as_str(&self) -> &str {
        // Invariant: built from ASCII alphanumerics only (random, from_bytes).
        std::str::from_utf8(&self.0).expect("an epoch is ASCII")
    }
}

impl FromStr for Epoch {
    type Err = EpochError;

    fn from_str(epoch: &str) -> Result<Epoch, EpochError> {
        Epoch::from_bytes(epoch.as_bytes())
    }
}

impl fmt::Display for Epoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Epoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Epoch({})", self.as_str())
    }
}

/// One message to store in one mailbox.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// The mailbox: the addressed user.
    pub mid: i64,
    /// The idempotency key: an entry whose `(mid, id)` was appended within
    /// the idempotency window is not stored again.
    pub id: MsgId,
    /// The operation the client sees on the frame.
    pub op: i32,
    /// The sending user, 0 when the backend sent it.
    pub from: i64,
    /// When the message was accepted, in Unix milliseconds.
    pub ts_ms: i64,
    /// The frame body, kept byte-exact.
    pub body: Bytes,
    /// Whether `(mid, id)` is remembered for the idempotency window. False
    /// only for an id generated for this one append, which nobody can send
    /// again (the standalone path without a caller's id): the embedded and
    /// memory stores then keep no idempotency row for it, one index write
    /// less per append (the Redis store, always fed through Kafka, keeps it).
    /// An id that travelled (through Kafka, from a client, from a caller)
    /// must stay `true`: a redelivery repeats it.
    pub dedupe: bool,
}

/// One message as a mailbox holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct Stored {
    /// Its position in the mailbox.
    pub seq: u32,
    /// Its message id.
    pub id: MsgId,
    /// [`Entry::ts_ms`].
    pub ts_ms: i64,
    /// [`Entry::op`].
    pub op: i32,
    /// [`Entry::from`].
    pub from: i64,
    /// [`Entry::body`].
    pub body: Bytes,
}

impl Stored {
    /// The stored form of `entry` at `seq`.
    pub fn new(seq: u32, entry: Entry) -> Stored {
        Stored {
            seq,
            id: entry.id,
            ts_ms: entry.ts_ms,
            op: entry.op,
            from: entry.from,
            body: entry.body,
        }
    }
}

/// Where one [`Entry`] of an append landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// The entry's mailbox.
    pub mid: i64,
    /// The entry's seq: new, or the one it got the first time if `duplicate`.
    pub seq: u32,
    /// The mailbox's epoch.
    pub epoch: Epoch,
    /// The `(mid, id)` had been appended before (within the idempotency
    /// window); nothing was stored this time.
    pub duplicate: bool,
}

/// A device's acknowledgement: everything up to `seq` arrived (op 21).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    /// The user.
    pub mid: i64,
    /// The device: the goim connection key.
    pub key: String,
    /// The last seq the device holds without a gap.
    pub seq: u32,
}

/// A device's position in a mailbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceAck {
    /// The highest seq the device acknowledged.
    pub ack: u32,
    /// When that ack was stored, in Unix milliseconds.
    pub ts_ms: i64,
}

/// A stretch of one mailbox, with the mailbox's bounds at the time of the
/// read. `first` and `top` describe the whole mailbox: `first` is the lowest
/// seq still stored and `top` the highest ever given, so an empty mailbox has
/// `first == top + 1` (a new one: first 1, top 0).
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    /// The mailbox's epoch.
    pub epoch: Epoch,
    /// The lowest seq still stored (`top + 1` when none is).
    pub first: u32,
    /// The highest seq given so far (0: none).
    pub top: u32,
    /// The messages, in the order asked for.
    pub entries: Vec<Stored>,
    /// More messages lie beyond the last entry, in the direction read.
    pub more: bool,
}

impl Page {
    /// Whether a client that holds everything up to `seq` in `epoch` misses
    /// nothing for good; see [`complete`].
    pub fn complete(&self, epoch: Option<&str>, seq: u32) -> bool {
        complete(epoch, seq, &self.epoch, self.first, self.top)
    }
}

/// Where a user stands: the mailbox's bounds, the user's read position and
/// each device's ack.
#[derive(Debug, Clone, PartialEq)]
pub struct Cursor {
    /// The mailbox's epoch.
    pub epoch: Epoch,
    /// The lowest seq still stored (`top + 1` when none is).
    pub first: u32,
    /// The highest seq given so far (0: none).
    pub top: u32,
    /// The user's read position (op 22), 0 when never set.
    pub read: u32,
    /// Each device's ack, by connection key.
    pub devices: BTreeMap<String, DeviceAck>,
}

impl Cursor {
    /// Whether a client that holds everything up to `seq` in `epoch` misses
    /// nothing for good; see [`complete`].
    pub fn complete(&self, epoch: Option<&str>, seq: u32) -> bool {
        complete(epoch, seq, &self.epoch, self.first, self.top)
    }
}

/// Whether a sync from `client_seq` (the last seq the client holds, 0 for
/// none) in `client_epoch` can give the client everything it misses, for a
/// mailbox whose bounds are `first..=top` in `epoch`.
///
/// It cannot when:
/// - the client's epoch is not the mailbox's (the seqs it holds name another
///   history), or the client holds seqs (`client_seq > 0`) but sent no epoch;
/// - retention removed messages right after the client's seq
///   (`client_seq + 1 < first`);
/// - the client holds seqs the store never gave (`client_seq > top`): the
///   store lost history without changing its epoch.
///
/// A client with no seq and no epoch is complete while the mailbox still
/// starts at 1.
pub fn complete(
    client_epoch: Option<&str>,
    client_seq: u32,
    epoch: &Epoch,
    first: u32,
    top: u32,
) -> bool {
    let same_history = match client_epoch {
        Some(client) => client == epoch.as_str(),
        None => client_seq == 0,
    };
    same_history && client_seq <= top && u64::from(client_seq) + 1 >= u64::from(first)
}

/// One mute of a user, as [`GroupStore::mutes`](crate::GroupStore::mutes)
/// lists it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Mute {
    /// What the mute covers, as the caller named it (`"all"`, `"group:9"`,
    /// `"room:live://1"`). The store neither checks nor interprets it.
    pub scope: String,
    /// When it ends (Unix ms; it no longer holds from that instant on), or
    /// `None` until it is lifted.
    pub until_ms: Option<i64>,
}

impl Mute {
    /// Whether the mute still holds at `now_ms`.
    pub fn holds_at(&self, now_ms: i64) -> bool {
        self.until_ms.is_none_or(|until| until > now_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn epoch() -> Epoch {
        "AbCd1234".parse().unwrap()
    }

    #[test]
    fn a_new_client_of_an_untrimmed_mailbox_is_complete() {
        assert!(complete(None, 0, &epoch(), 1, 0), "new mailbox");
        assert!(complete(None, 0, &epoch(), 1, 9), "nothing trimmed");
        assert!(!complete(None, 0, &epoch(), 2, 9), "seq 1 was trimmed");
    }

    #[test]
    fn a_client_right_before_first_is_complete() {
        assert!(complete(Some("AbCd1234"), 4, &epoch(), 5, 9));
        assert!(complete(Some("AbCd1234"), 9, &epoch(), 5, 9), "at top");
        assert!(
            complete(Some("AbCd1234"), 9, &epoch(), 10, 9),
            "all trimmed, but the client holds them all"
        );
        assert!(
            !complete(Some("AbCd1234"), 3, &epoch(), 5, 9),
            "seq 4 is gone"
        );
    }

    #[test]
    fn another_or_a_missing_epoch_is_incomplete() {
        assert!(!complete(Some("zzzzzzzz"), 4, &epoch(), 1, 9));
        assert!(!complete(Some("zzzzzzzz"), 0, &epoch(), 1, 9));
        assert!(!complete(None, 4, &epoch(), 1, 9), "seqs without an epoch");
        assert!(!complete(Some(""), 0, &epoch(), 1, 9));
    }

    #[test]
    fn a_client_ahead_of_top_is_incomplete() {
        assert!(!complete(Some("AbCd1234"), 10, &epoch(), 1, 9));
    }

    #[test]
    fn complete_does_not_overflow_at_the_largest_seq() {
        assert!(complete(
            Some("AbCd1234"),
            MAX_SEQ,
            &epoch(),
            MAX_SEQ + 1,
            MAX_SEQ
        ));
        assert!(complete(Some("AbCd1234"), u32::MAX, &epoch(), 1, u32::MAX));
    }

    #[test]
    fn page_and_cursor_use_the_same_rule() {
        let page = Page {
            epoch: epoch(),
            first: 5,
            top: 9,
            entries: Vec::new(),
            more: false,
        };
        let cursor = Cursor {
            epoch: epoch(),
            first: 5,
            top: 9,
            read: 0,
            devices: BTreeMap::new(),
        };
        for seq in 0..12 {
            let expected = (4..=9).contains(&seq);
            assert_eq!(page.complete(Some("AbCd1234"), seq), expected, "seq {seq}");
            assert_eq!(
                cursor.complete(Some("AbCd1234"), seq),
                expected,
                "seq {seq}"
            );
        }
    }

    #[test]
    fn msg_ids_are_bounded_printable_ascii() {
        assert_eq!(MsgId::parse("order-42:a").unwrap().as_str(), "order-42:a");
        assert_eq!(MsgId::parse(""), Err(MsgIdError::Empty));
        assert_eq!(MsgId::parse(&"x".repeat(65)), Err(MsgIdError::TooLong(65)));
        assert!(MsgId::parse(&"x".repeat(64)).is_ok());
        assert_eq!(MsgId::parse("a b"), Err(MsgIdError::InvalidByte(1)));
        assert_eq!(MsgId::parse("é"), Err(MsgIdError::InvalidByte(0)));
        let generated = MsgId::generate();
        assert_eq!(generated.as_str().len(), 36);
        assert_eq!(MsgId::parse(generated.as_str()), Ok(generated));
    }

    #[test]
    fn epochs_are_eight_alphanumerics() {
        let epoch = Epoch::random();
        assert_eq!(epoch.as_str().len(), Epoch::LEN);
        assert_eq!(epoch.as_str().parse::<Epoch>(), Ok(epoch));
        assert!("short".parse::<Epoch>().is_err());
        assert!("abc-1234".parse::<Epoch>().is_err());
        assert_ne!(Epoch::random(), Epoch::random());
    }

    #[test]
    fn a_mute_ends_at_its_until() {
        let mute = |until_ms| Mute {
            scope: "all".to_owned(),
            until_ms,
        };
        assert!(mute(None).holds_at(i64::MAX));
        assert!(mute(Some(10)).holds_at(9));
        assert!(!mute(Some(10)).holds_at(10), "until is exclusive");
        assert!(!mute(Some(10)).holds_at(11));
    }
}
