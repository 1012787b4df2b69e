//! Every Redis key and channel of the store. A mailbox's keys share the hash
//! tag `{<mid>}`, so they sit in one cluster slot and one script may touch
//! them all. The key prefix holds no braces (checked by [`Keys::new`]), so
//! the tag is always the mid's (or the gid's), whatever a message id holds.
//!
//! | key | type | tag |
//! |---|---|---|
//! | `<prefix>{<mid>}:x` | STREAM, the messages | mid |
//! | `<prefix>{<mid>}:m` | HASH, the mailbox's state | mid |
//! | `<prefix>{<mid>}:i:<id>` | STRING, an appended message id | mid |
//! | `<prefix>g:{<gid>}` | SET of member mids | gid |
//! | `<prefix>mute:{<mid>}` | HASH scope -> until | mid |
//!
//! Channel `<prefix>mutes`: the mid whose mutes changed, after each change.

use crate::{MailboxError, MsgId};

/// The key names under one prefix.
#[derive(Debug, Clone)]
pub(super) struct Keys {
    prefix: std::sync::Arc<str>,
}

impl Keys {
    pub(super) fn new(prefix: &str) -> Result<Keys, MailboxError> {
        if prefix.contains(['{', '}']) {
            return Err(MailboxError::Config(format!(
                "redis key prefix {prefix:?} holds a brace; the mid is the hash tag"
            )));
        }
        Ok(Keys {
            prefix: prefix.into(),
        })
    }

    /// STREAM of the messages: entry id `<seq>-0`, fields `i` id, `o` op,
    /// `f` from, `t` ts (Unix ms), `d` body.
    pub(super) fn data(&self, mid: i64) -> String {
        format!("{}{{{mid}}}:x", self.prefix)
    }

    /// HASH of the mailbox's state: `e` epoch, `s` top, `r` read,
    /// `a:<key>` a device's ack, `t:<key>` when it was stored (Unix ms).
    pub(super) fn meta(&self, mid: i64) -> String {
        format!("{}{{{mid}}}:m", self.prefix)
    }

    /// STRING `<epoch><seq>` of an appended message id, expiring with the
    /// idempotency window.
    pub(super) fn idem(&self, mid: i64, id: &MsgId) -> String {
        format!("{}{{{mid}}}:i:{id}", self.prefix)
    }

    /// SET of a group's members (decimal mids). It exists while the group
    /// has a member (Redis deletes an emptied set).
    pub(super) fn group(&self, gid: i64) -> String {
        format!("{}g:{{{gid}}}", self.prefix)
    }

    /// HASH of a user's mutes: scope -> until (Unix ms, decimal), or `""`
    /// until lifted. It expires with its last timed mute, and holds no time
    /// to live while a mute without end is in it.
    pub(super) fn mutes(&self, mid: i64) -> String {
        format!("{}mute:{{{mid}}}", self.prefix)
    }

    /// Channel on which every change of a user's mutes is published: the
    /// payload is the mid, in decimal.
    pub(super) fn mute_channel(&self) -> String {
        format!("{}mutes", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mailbox_keys_share_the_mid_as_hash_tag() {
        let keys = Keys::new("rim:mb:").unwrap();
        let id = MsgId::parse("a{b}c").unwrap();
        assert_eq!(keys.data(-7), "rim:mb:{-7}:x");
        assert_eq!(keys.meta(42), "rim:mb:{42}:m");
        assert_eq!(keys.idem(42, &id), "rim:mb:{42}:i:a{b}c");
        assert_eq!(keys.group(-9), "rim:mb:g:{-9}");
        assert_eq!(keys.mutes(42), "rim:mb:mute:{42}");
        assert_eq!(keys.mute_channel(), "rim:mb:mutes");
    }

    #[test]
    fn a_prefix_with_a_brace_is_refused() {
        assert!(matches!(
            Keys::new("rim:{x}:"),
            Err(MailboxError::Config(_))
        ));
        assert!(matches!(Keys::new("rim}"), Err(MailboxError::Config(_))));
        assert!(Keys::new("").is_ok());
    }
}
