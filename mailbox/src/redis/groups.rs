//! [`GroupStore`] for [`RedisStore`]: group membership and mutes in Redis
//! (keys: `keys`; mute scripts: `scripts`).
//!
//! - **Groups**: one SET per group, under the gid's hash tag. An add or a
//!   removal and the size it answers run in one `MULTI`, so the size is the
//!   one right after the change. Redis deletes a set once it is empty, which
//!   is the trait's "a group exists while it has a member".
//! - **Mutes**: one HASH per user, scope -> until (`""` until lifted). Each
//!   change is one script that also publishes the mid on the mute channel
//!   (see [`RedisStore::watch_mutes`]). Reads filter expired mutes; the next
//!   change of the same user removes them, and the hash expires with its
//!   last timed mute.
//!
//! Every command here may be repeated after a dropped connection (adds,
//! removals and mute changes are idempotent).

use async_trait::async_trait;
use redis::Value;

use super::{array, corrupt, int, text, RedisStore, MAX_TTL_MS};
use crate::memory::now_ms;
use crate::{GroupStore, MailboxError, Mute};

/// The size in the reply of a `MULTI` whose only kept answer is `SCARD`.
fn size_reply(reply: Vec<Value>) -> Result<usize, MailboxError> {
    let [size] = <[Value; 1]>::try_from(reply)
        .map_err(|reply| corrupt(format_args!("group change answered {reply:?}")))?;
    let size = int(&size)?;
    usize::try_from(size).map_err(|_| corrupt(format_args!("group size {size}")))
}

fn mid(value: Value) -> Result<i64, MailboxError> {
    let text = text(value)?;
    text.parse()
        .map_err(|_| corrupt(format_args!("group member {text:?}")))
}

/// The `HGETALL` reply of a mute hash, as (scope, until) pairs.
fn mute_pairs(reply: Value) -> Result<Vec<(Value, Value)>, MailboxError> {
    match reply {
        // RESP3 answers a map.
        Value::Map(pairs) => Ok(pairs),
        reply => {
            let flat = array(reply)?;
            if flat.len() % 2 != 0 {
                return Err(corrupt("mute hash answered an odd number of fields"));
            }
            let mut flat = flat.into_iter();
            let mut pairs = Vec::new();
            while let (Some(scope), Some(until)) = (flat.next(), flat.next()) {
                pairs.push((scope, until));
            }
            Ok(pairs)
        }
    }
}

impl RedisStore {
    /// Waits for [`RedisStore::wait_replicas`] replicas to hold the writes
    /// to `key` made so far.
    async fn replicated(&self, key: &str) -> Result<(), MailboxError> {
        self.conn
            .wait_replicas(key, self.replicas, self.replica_timeout)
            .await
            .map_err(super::unavailable)
    }

    /// Adds or removes members (`command` is `SADD` or `SREM`) and answers
    /// the size afterwards.
    async fn change_members(
        &self,
        command: &str,
        gid: i64,
        mids: &[i64],
    ) -> Result<usize, MailboxError> {
        let key = self.keys.group(gid);
        let mut pipe = redis::pipe();
        pipe.atomic();
        // Neither command takes an empty member list.
        if !mids.is_empty() {
            pipe.cmd(command).arg(&key).arg(mids).ignore();
        }
        pipe.cmd("SCARD").arg(&key);
        let size = size_reply(self.run_pipe(&pipe).await?)?;
        self.replicated(&key).await?;
        Ok(size)
    }

    /// Runs a mute script with the arguments every one starts with.
    async fn change_mutes(
        &self,
        script: &redis::Script,
        mid: i64,
        tail: &[&str],
    ) -> Result<(), MailboxError> {
        let key = self.keys.mutes(mid);
        let mut call = script.key(&key);
        call.arg(now_ms())
            .arg(MAX_TTL_MS)
            .arg(self.keys.mute_channel())
            .arg(mid);
        for arg in tail {
            call.arg(*arg);
        }
        let done: Value = self.invoke(&call).await?;
        match int(&done)? {
            1 => self.replicated(&key).await,
            other => Err(corrupt(format_args!("mute script answered {other}"))),
        }
    }
}

#[async_trait]
impl GroupStore for RedisStore {
    async fn add_members(&self, gid: i64, mids: &[i64]) -> Result<usize, MailboxError> {
        self.change_members("SADD", gid, mids).await
    }

    async fn remove_members(&self, gid: i64, mids: &[i64]) -> Result<usize, MailboxError> {
        self.change_members("SREM", gid, mids).await
    }

    async fn members(&self, gid: i64) -> Result<Vec<i64>, MailboxError> {
        let reply = self
            .query(redis::cmd("SMEMBERS").arg(self.keys.group(gid)))
            .await?;
        let members = match reply {
            // RESP3 answers a set.
            Value::Set(values) => values,
            reply => array(reply)?,
        };
        let mut members = members
            .into_iter()
            .map(mid)
            .collect::<Result<Vec<_>, _>>()?;
        members.sort_unstable();
        Ok(members)
    }

    async fn is_member(&self, gid: i64, mid: i64) -> Result<bool, MailboxError> {
        let reply = self
            .query(redis::cmd("SISMEMBER").arg(self.keys.group(gid)).arg(mid))
            .await?;
        match reply {
            Value::Boolean(member) => Ok(member),
            reply => Ok(int(&reply)? == 1),
        }
    }

    async fn set_mute(
        &self,
        mid: i64,
        scope: &str,
        until_ms: Option<i64>,
    ) -> Result<(), MailboxError> {
        match until_ms {
            None => {
                self.change_mutes(&self.scripts.set_mute, mid, &[scope, ""])
                    .await
            }
            Some(until) if until > now_ms() => {
                let until = until.to_string();
                self.change_mutes(&self.scripts.set_mute, mid, &[scope, &until])
                    .await
            }
            // Already over: the scope is no longer muted.
            Some(_) => {
                self.change_mutes(&self.scripts.clear_mute, mid, &[scope])
                    .await
            }
        }
    }

    async fn clear_mute(&self, mid: i64, scope: Option<&str>) -> Result<(), MailboxError> {
        let scope: Vec<&str> = scope.into_iter().collect();
        self.change_mutes(&self.scripts.clear_mute, mid, &scope)
            .await
    }

    async fn mutes(&self, mid: i64) -> Result<Vec<Mute>, MailboxError> {
        let now = now_ms();
        let reply = self
            .query(redis::cmd("HGETALL").arg(self.keys.mutes(mid)))
            .await?;
        let mut mutes = Vec::new();
        for (scope, until) in mute_pairs(reply)? {
            let until = text(until)?;
            let until_ms = match until.as_str() {
                "" => None,
                n => Some(
                    n.parse()
                        .map_err(|_| corrupt(format_args!("mute until {n:?}")))?,
                ),
            };
            let mute = Mute {
                scope: text(scope)?,
                until_ms,
            };
            if mute.holds_at(now) {
                mutes.push(mute);
            }
        }
        mutes.sort_unstable();
        Ok(mutes)
    }
}
