//! Group membership and mutes in the embedded store: the functions the
//! writer applies inside its transactions, and the reads
//! [`RedbStore`](super::RedbStore) runs in read transactions. Tables and key
//! formats: `layout` (`groups`, `mutes`).
//!
//! A group's size is counted from its rows, not kept apart: it costs a range
//! scan per change, which membership changes (rare, and at most a few
//! thousand members under write diffusion) easily afford, and it cannot
//! drift from the rows. Expired mutes are removed when the same user's mutes
//! next change; reads skip them.

use redb::{ReadableTable, Table};

use super::layout::{member_key, member_of, mid_and, mid_key};
use super::storage;
use crate::{MailboxError, Mute};

/// The `groups` table, in a read or a write transaction.
pub(super) trait Groups: ReadableTable<&'static [u8; 16], ()> {}
impl<T: ReadableTable<&'static [u8; 16], ()>> Groups for T {}

/// The `mutes` table, in a read or a write transaction.
pub(super) trait Mutes: ReadableTable<&'static [u8], Option<i64>> {}
impl<T: ReadableTable<&'static [u8], Option<i64>>> Mutes for T {}

type GroupsMut<'txn> = Table<'txn, &'static [u8; 16], ()>;
type MutesMut<'txn> = Table<'txn, &'static [u8], Option<i64>>;

/// The members of `gid`, ascending.
pub(super) fn members(table: &impl Groups, gid: i64) -> Result<Vec<i64>, MailboxError> {
    let (first, last) = (member_key(gid, i64::MIN), member_key(gid, i64::MAX));
    let mut members = Vec::new();
    for row in table.range(&first..=&last).map_err(storage)? {
        let (key, _) = row.map_err(storage)?;
        members.push(member_of(key.value()));
    }
    Ok(members)
}

/// How many members `gid` has.
pub(super) fn size(table: &impl Groups, gid: i64) -> Result<usize, MailboxError> {
    let (first, last) = (member_key(gid, i64::MIN), member_key(gid, i64::MAX));
    let mut size = 0;
    for row in table.range(&first..=&last).map_err(storage)? {
        row.map_err(storage)?;
        size += 1;
    }
    Ok(size)
}

pub(super) fn is_member(table: &impl Groups, gid: i64, mid: i64) -> Result<bool, MailboxError> {
    Ok(table.get(&member_key(gid, mid)).map_err(storage)?.is_some())
}

/// Adds `mids` to `gid`; answers the size afterwards.
pub(super) fn add(
    table: &mut GroupsMut<'_>,
    gid: i64,
    mids: &[i64],
) -> Result<usize, MailboxError> {
    for &mid in mids {
        table.insert(&member_key(gid, mid), ()).map_err(storage)?;
    }
    size(table, gid)
}

/// Removes `mids` from `gid`; answers the size afterwards.
pub(super) fn remove(
    table: &mut GroupsMut<'_>,
    gid: i64,
    mids: &[i64],
) -> Result<usize, MailboxError> {
    for &mid in mids {
        table.remove(&member_key(gid, mid)).map_err(storage)?;
    }
    size(table, gid)
}

/// Every stored mute of `mid`, expired or not, by scope ascending.
fn stored_mutes(table: &impl Mutes, mid: i64) -> Result<Vec<Mute>, MailboxError> {
    let prefix = mid_key(mid);
    let mut mutes = Vec::new();
    for row in table.range(prefix.as_slice()..).map_err(storage)? {
        let (key, until) = row.map_err(storage)?;
        let Some(scope) = key.value().strip_prefix(prefix.as_slice()) else {
            break;
        };
        let scope = std::str::from_utf8(scope)
            .map_err(|_| MailboxError::Corrupt(format!("mute scope of mid {mid} is not UTF-8")))?;
        mutes.push(Mute {
            scope: scope.to_owned(),
            until_ms: until.value(),
        });
    }
    Ok(mutes)
}

/// The mutes of `mid` that hold at `now_ms`.
pub(super) fn mutes(table: &impl Mutes, mid: i64, now_ms: i64) -> Result<Vec<Mute>, MailboxError> {
    let mut mutes = stored_mutes(table, mid)?;
    mutes.retain(|mute| mute.holds_at(now_ms));
    Ok(mutes)
}

/// Sets (or, with an `until_ms` already past, lifts) one mute, and drops
/// the user's expired ones.
pub(super) fn set_mute(
    table: &mut MutesMut<'_>,
    mid: i64,
    scope: &str,
    until_ms: Option<i64>,
    now_ms: i64,
) -> Result<(), MailboxError> {
    for mute in stored_mutes(table, mid)? {
        if !mute.holds_at(now_ms) {
            table
                .remove(mid_and(mid, mute.scope.as_bytes()).as_slice())
                .map_err(storage)?;
        }
    }
    let key = mid_and(mid, scope.as_bytes());
    if until_ms.is_none_or(|until| until > now_ms) {
        table.insert(key.as_slice(), until_ms).map_err(storage)?;
    } else {
        table.remove(key.as_slice()).map_err(storage)?;
    }
    Ok(())
}

/// Lifts one mute of `mid`, or all of them.
pub(super) fn clear_mute(
    table: &mut MutesMut<'_>,
    mid: i64,
    scope: Option<&str>,
) -> Result<(), MailboxError> {
    let scopes = match scope {
        Some(scope) => vec![scope.to_owned()],
        None => stored_mutes(table, mid)?
            .into_iter()
            .map(|mute| mute.scope)
            .collect(),
    };
    for scope in scopes {
        table
            .remove(mid_and(mid, scope.as_bytes()).as_slice())
            .map_err(storage)?;
    }
    Ok(())
}
