//! Groups and mutes in logic (docs/protocol.md, "Chat"): membership and
//! group messages for the HTTP API, mutes with their scopes, and the cache
//! that lets the send path check mutes without a store read per message.
//!
//! Membership and mutes live in the mailbox store ([`rim_mailbox::GroupStore`]).
//! Each logic caches a user's mutes for at most [`MUTE_CACHE_TTL`]; a mute
//! set through this logic drops its entry at once, and in the distributed
//! mode the Redis store's mute announcements drop it on every other logic,
//! so a mute applies everywhere within a second.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use parking_lot::Mutex;
use rim_mailbox::Mute;
use tokio::time::Instant;

use crate::im::StoredPush;
use crate::{Accepts, Logic, LogicError};

/// How long a user's mutes are cached by one logic.
pub const MUTE_CACHE_TTL: Duration = Duration::from_millis(500);

/// Most cached users; past it the cache starts over.
const MUTE_CACHE_MAX: usize = 100_000;

/// Each user's mutes as last read, and when.
#[derive(Debug, Default)]
pub(crate) struct MuteCache(Mutex<HashMap<i64, (Instant, Vec<Mute>)>>);

impl MuteCache {
    fn get(&self, mid: i64) -> Option<Vec<Mute>> {
        let cache = self.0.lock();
        let (at, mutes) = cache.get(&mid)?;
        (at.elapsed() < MUTE_CACHE_TTL).then(|| mutes.clone())
    }

    fn put(&self, mid: i64, mutes: Vec<Mute>) {
        let mut cache = self.0.lock();
        if cache.len() >= MUTE_CACHE_MAX {
            cache.clear();
        }
        cache.insert(mid, (Instant::now(), mutes));
    }

    /// Drops `mid`'s entry: its mutes changed.
    pub(crate) fn forget(&self, mid: i64) {
        self.0.lock().remove(&mid);
    }

    /// Drops every entry (changes may have been missed).
    pub(crate) fn forget_all(&self) {
        self.0.lock().clear();
    }
}

/// A mute's scope, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MuteScope {
    /// Every message the user sends.
    All,
    /// Messages to one group.
    Group(i64),
    /// Messages to one room.
    Room(String),
}

impl MuteScope {
    /// Reads `all`, `group:<gid>` or `room:<room id>`.
    pub fn parse(scope: &str) -> Result<MuteScope, LogicError> {
        let bad = || {
            LogicError::BadRequest(format!(
                "scope: \"all\", \"group:<gid>\" or \"room:<type://id>\", got {scope:?}"
            ))
        };
        if scope == "all" {
            return Ok(MuteScope::All);
        }
        if let Some(gid) = scope.strip_prefix("group:") {
            return match gid.parse::<i64>() {
                Ok(gid) if gid != 0 => Ok(MuteScope::Group(gid)),
                _ => Err(bad()),
            };
        }
        match scope.strip_prefix("room:") {
            Some(room) if !room.is_empty() => Ok(MuteScope::Room(room.to_owned())),
            _ => Err(bad()),
        }
    }

    /// The stored form.
    pub fn as_string(&self) -> String {
        match self {
            MuteScope::All => "all".into(),
            MuteScope::Group(gid) => format!("group:{gid}"),
            MuteScope::Room(room) => format!("room:{room}"),
        }
    }
}

/// Wall-clock Unix milliseconds of `t`.
pub(crate) fn unix_ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn check_gid(gid: i64) -> Result<(), LogicError> {
    if gid == 0 {
        return Err(LogicError::BadRequest("gid: 0 is not a group".into()));
    }
    Ok(())
}

fn check_mids(mids: &[i64]) -> Result<(), LogicError> {
    if mids.is_empty() {
        return Err(LogicError::BadRequest(
            "mids: at least one mid is required".into(),
        ));
    }
    if mids.contains(&0) {
        return Err(LogicError::BadRequest(
            "mids: 0 is the anonymous user and cannot be a member".into(),
        ));
    }
    Ok(())
}

/// Why a group operation was refused beyond a bad request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupError {
    /// A request logic refused or could not serve.
    Logic(LogicError),
    /// The group has no member.
    NoGroup(i64),
    /// The group would have (or has) more than `chat.group_max_members`.
    TooBig {
        /// The group.
        gid: i64,
        /// Its size, or the size it would have.
        size: usize,
        /// `chat.group_max_members`.
        max: usize,
    },
}

impl From<LogicError> for GroupError {
    fn from(err: LogicError) -> Self {
        GroupError::Logic(err)
    }
}

impl From<rim_mailbox::MailboxError> for GroupError {
    fn from(err: rim_mailbox::MailboxError) -> Self {
        GroupError::Logic(err.into())
    }
}

impl std::fmt::Display for GroupError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GroupError::Logic(e) => e.fmt(f),
            GroupError::NoGroup(gid) => write!(f, "no such group: {gid}"),
            GroupError::TooBig { gid, size, max } => write!(
                f,
                "group {gid} would have {size} members; at most {max} are allowed, \
                 because each message is written to every member's mailbox"
            ),
        }
    }
}

impl Logic {
    /// Adds members to `gid` (creating it); refuses to grow it past
    /// `chat.group_max_members`. Answers the members after.
    pub async fn add_members(&self, gid: i64, mids: &[i64]) -> Result<Vec<i64>, GroupError> {
        check_gid(gid)?;
        check_mids(mids)?;
        let groups = self.mailbox()?.groups();
        let mut members = groups.members(gid).await?;
        let before = members.len();
        for &mid in mids {
            if !members.contains(&mid) {
                members.push(mid);
            }
        }
        let max = self.config.chat.group_max_members;
        if members.len() > max {
            return Err(GroupError::TooBig {
                gid,
                size: members.len(),
                max,
            });
        }
        groups.add_members(gid, mids).await?;
        metrics::counter!("rim_logic_group_changes_total", "change" => "add")
            .increment((members.len() - before) as u64);
        Ok(groups.members(gid).await?)
    }

    /// Removes members from `gid` (the last one removes the group).
    pub async fn remove_members(&self, gid: i64, mids: &[i64]) -> Result<Vec<i64>, GroupError> {
        check_gid(gid)?;
        check_mids(mids)?;
        let groups = self.mailbox()?.groups();
        groups.remove_members(gid, mids).await?;
        metrics::counter!("rim_logic_group_changes_total", "change" => "remove")
            .increment(mids.len() as u64);
        Ok(groups.members(gid).await?)
    }

    /// The members of `gid`; a group without members is no group.
    pub async fn group_members(&self, gid: i64) -> Result<Vec<i64>, GroupError> {
        check_gid(gid)?;
        let members = self.mailbox()?.groups().members(gid).await?;
        if members.is_empty() {
            return Err(GroupError::NoGroup(gid));
        }
        Ok(members)
    }

    /// The backend's message to a group: stored in every member's mailbox.
    pub async fn push_group(
        &self,
        gid: i64,
        operation: i32,
        msg: Bytes,
        id: Option<&str>,
    ) -> Result<StoredPush, GroupError> {
        let members = self.group_members(gid).await?;
        let max = self.config.chat.group_max_members;
        if members.len() > max {
            return Err(GroupError::TooBig {
                gid,
                size: members.len(),
                max,
            });
        }
        Ok(self
            .store_message(operation, &members, msg, id, 0, Accepts::Filter)
            .await?)
    }

    /// Mutes `mid` in `scope` until `until` (`None`: until lifted).
    pub async fn mute(
        &self,
        mid: i64,
        scope: &MuteScope,
        until: Option<SystemTime>,
    ) -> Result<Vec<Mute>, LogicError> {
        if mid == 0 {
            return Err(LogicError::BadRequest(
                "mid: 0 is the anonymous user".into(),
            ));
        }
        let groups = self.mailbox()?.groups();
        groups
            .set_mute(mid, &scope.as_string(), until.map(unix_ms))
            .await?;
        self.mutes.forget(mid);
        metrics::counter!("rim_logic_mutes_total", "change" => "set").increment(1);
        Ok(groups.mutes(mid).await?)
    }

    /// Lifts `mid`'s mute in `scope`, or all of them.
    pub async fn unmute(
        &self,
        mid: i64,
        scope: Option<&MuteScope>,
    ) -> Result<Vec<Mute>, LogicError> {
        if mid == 0 {
            return Err(LogicError::BadRequest(
                "mid: 0 is the anonymous user".into(),
            ));
        }
        let groups = self.mailbox()?.groups();
        let scope = scope.map(MuteScope::as_string);
        groups.clear_mute(mid, scope.as_deref()).await?;
        self.mutes.forget(mid);
        metrics::counter!("rim_logic_mutes_total", "change" => "lift").increment(1);
        Ok(groups.mutes(mid).await?)
    }

    /// `mid`'s mutes that still hold (read from the store).
    pub async fn user_mutes(&self, mid: i64) -> Result<Vec<Mute>, LogicError> {
        Ok(self.mailbox()?.groups().mutes(mid).await?)
    }

    /// `mid`'s mutes, from the cache when fresh.
    pub(crate) async fn cached_mutes(&self, mid: i64) -> Result<Vec<Mute>, LogicError> {
        if let Some(mutes) = self.mutes.get(mid) {
            return Ok(mutes);
        }
        let mutes = self.mailbox()?.groups().mutes(mid).await?;
        self.mutes.put(mid, mutes.clone());
        Ok(mutes)
    }

    /// Another process changed `mid`'s mutes (the store's announcement);
    /// `None`: changes may have been missed, forget every user's.
    pub fn mutes_changed(&self, mid: Option<i64>) {
        match mid {
            Some(mid) => self.mutes.forget(mid),
            None => self.mutes.forget_all(),
        }
    }
}
