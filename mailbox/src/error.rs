//! Errors of the mailbox store and of its inputs.

/// Why a mailbox operation failed. Retrying a failed append with the same
/// ids is safe: the memory and embedded stores stored nothing of it, and an
/// entry the Redis store did store answers the retry as a duplicate with its
/// seq (see [`crate::MailboxStore::append`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MailboxError {
    /// The store could not read or write (I/O error, full disk, closed store,
    /// Redis unreachable or refusing the command).
    #[error("mailbox store unavailable: {0}")]
    Unavailable(String),
    /// The store was given settings it cannot work with (a malformed Redis
    /// URL or key prefix).
    #[error("mailbox store misconfigured: {0}")]
    Config(String),
    /// The mailbox has given every seq below 2^31; it takes no more messages.
    #[error("mailbox {mid} has no seq left")]
    SeqExhausted {
        /// The full mailbox.
        mid: i64,
    },
    /// The store holds data this version cannot read.
    #[error("mailbox store corrupt: {0}")]
    Corrupt(String),
}

/// Why a string is not a message id (see [`crate::MsgId`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MsgIdError {
    /// The id is empty.
    #[error("message id is empty")]
    Empty,
    /// The id is longer than 64 bytes.
    #[error("message id is {0} bytes long, at most 64 are allowed")]
    TooLong(usize),
    /// A byte outside printable ASCII (`!` to `~`), at this offset.
    #[error("message id has a space, control or non-ASCII byte at offset {0}")]
    InvalidByte(usize),
}

/// A stored or given epoch is not 8 ASCII letters and digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("an epoch is 8 ASCII letters and digits")]
pub struct EpochError;
