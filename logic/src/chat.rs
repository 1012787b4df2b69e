//! Messages clients send (op 4 of IM sessions; docs/protocol.md, "Chat"):
//! parsing, the checks in order (shape, size, send rate, mutes, room and
//! group membership, the word filter), the envelope, and where the message
//! goes: the recipient's and the sender's mailboxes (peer), every member's
//! (group), or the room's live members (room, not stored).
//!
//! The sender is the session's user, never the body's. Each check answers
//! op 5 with its own code; code 0 means the message is durably accepted (the
//! embedded store fsynced it, or Kafka acknowledged it).

use std::num::NonZeroU32;

use bytes::Bytes;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use rim_proto::pb::im::{SendReply, SendReq};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use tracing::{debug, warn};

use crate::groups::{GroupError, MuteScope};
use crate::{Accepts, ChatConfig, Logic, LogicError, Verdict};

/// Longest client message id, in bytes: the mailbox's idempotency key is
/// `<from>.<id>`, at most 64 bytes.
pub(crate) const CLIENT_ID_MAX: usize = 40;

/// Why a sent message was not accepted: op 5's code and reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// 400: the body is not a message.
    Malformed(String),
    /// 403: the sender is muted, or may not send there.
    Forbidden(String),
    /// 404: no such group.
    NoGroup(i64),
    /// 409: the sender is not a member of the group.
    NotMember(i64),
    /// 413: the body (or the group) is too big.
    TooBig(String),
    /// 422: the word filter rejected the body.
    Filtered(String),
    /// 429: over the send rate.
    Rate,
    /// 503: not accepted (store or queue unavailable); send it again.
    Unavailable(String),
}

impl Refusal {
    fn code(&self) -> u32 {
        match self {
            Refusal::Malformed(_) => 400,
            Refusal::Forbidden(_) => 403,
            Refusal::NoGroup(_) => 404,
            Refusal::NotMember(_) => 409,
            Refusal::TooBig(_) => 413,
            Refusal::Filtered(_) => 422,
            Refusal::Rate => 429,
            Refusal::Unavailable(_) => 503,
        }
    }

    fn reason(&self) -> String {
        match self {
            Refusal::Malformed(m) | Refusal::Forbidden(m) | Refusal::TooBig(m) => m.clone(),
            Refusal::NoGroup(gid) => format!("no such group: {gid}"),
            Refusal::NotMember(gid) => format!("not a member of group {gid}"),
            Refusal::Filtered(word) => format!("rejected by the word filter: {word:?}"),
            Refusal::Rate => "over the send rate; slow down".into(),
            Refusal::Unavailable(m) => format!("unavailable: {m}; send it again"),
        }
    }
}

impl From<LogicError> for Refusal {
    fn from(err: LogicError) -> Self {
        match err {
            LogicError::BadRequest(m) => Refusal::Malformed(m),
            LogicError::Refused(m) => Refusal::Forbidden(m),
            LogicError::Unavailable(m) | LogicError::Internal(m) => Refusal::Unavailable(m),
        }
    }
}

/// op 4's body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Message<'a> {
    #[serde(default)]
    to: Option<i64>,
    #[serde(default)]
    group: Option<i64>,
    #[serde(default, borrow)]
    room: Option<&'a str>,
    op: i32,
    #[serde(borrow)]
    id: &'a str,
    #[serde(borrow)]
    body: &'a RawValue,
}

/// Where a message goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    /// One user (and the sender's own mailbox).
    Peer(i64),
    /// Every member of a group (the sender is one).
    Group(i64),
    /// The live members of a room; not stored.
    Room(String),
}

impl Target {
    fn kind(&self) -> &'static str {
        match self {
            Target::Peer(_) => "peer",
            Target::Group(_) => "group",
            Target::Room(_) => "room",
        }
    }
}

/// The stored (or, for rooms, pushed) body: who sent what, where, when.
#[derive(Serialize)]
struct Envelope<'a> {
    from: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    to: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    group: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    room: Option<&'a str>,
    id: &'a str,
    ts: i64,
    body: &'a RawValue,
}

/// Per-user send rates.
pub(crate) struct SendRate(DefaultKeyedRateLimiter<i64>);

impl SendRate {
    pub(crate) fn new(config: &ChatConfig) -> SendRate {
        let rate = NonZeroU32::new(config.rate).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(config.burst).unwrap_or(NonZeroU32::MIN);
        SendRate(RateLimiter::keyed(
            Quota::per_second(rate).allow_burst(burst),
        ))
    }

    fn allow(&self, mid: i64) -> bool {
        let allowed = self.0.check_key(&mid).is_ok();
        // Keys of users idle long enough to be full again are dropped.
        if self.0.len() > 100_000 {
            self.0.retain_recent();
        }
        allowed
    }
}

/// The id of a body that may not parse as a message, for op 5.
fn id_of(body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct IdOnly {
        id: String,
    }
    serde_json::from_slice::<IdOnly>(body)
        .map(|b| b.id)
        .unwrap_or_default()
}

fn check_id(id: &str) -> Result<(), Refusal> {
    let printable = id.bytes().all(|b| b.is_ascii_graphic());
    if id.is_empty() || id.len() > CLIENT_ID_MAX || !printable {
        return Err(Refusal::Malformed(format!(
            "id: 1 to {CLIENT_ID_MAX} printable ASCII characters without spaces"
        )));
    }
    Ok(())
}

impl Logic {
    /// op 4 of an IM session: checks the message, stores it where it goes
    /// (or pushes it to the room) and answers op 5's body.
    pub async fn send(&self, req: SendReq) -> SendReply {
        let result = self.accept(&req).await;
        let (kind, id, refusal) = match result {
            Ok((kind, id)) => (kind, id, None),
            Err((kind, refusal)) => (kind, id_of(&req.body), Some(refusal)),
        };
        let code = refusal.as_ref().map_or(0, Refusal::code);
        metrics::counter!("rim_logic_chat_messages_total", "kind" => kind, "code" => code.to_string())
            .increment(1);
        match refusal {
            None => SendReply {
                id,
                code: 0,
                reason: String::new(),
            },
            Some(refusal) => {
                debug!(mid = req.mid, key = %req.key, id = %id, code, reason = %refusal.reason(), "message refused");
                SendReply {
                    id,
                    code,
                    reason: refusal.reason(),
                }
            }
        }
    }

    async fn accept(
        &self,
        req: &SendReq,
    ) -> Result<(&'static str, String), (&'static str, Refusal)> {
        let malformed = |m: String| ("unknown", Refusal::Malformed(m));
        if req.mid == 0 {
            return Err((
                "unknown",
                Refusal::Forbidden("an anonymous session cannot send".into()),
            ));
        }
        let message: Message<'_> =
            serde_json::from_slice(&req.body).map_err(|e| malformed(format!("message: {e}")))?;
        let target = match (message.to, message.group, message.room) {
            (Some(to), None, None) if to != 0 => Target::Peer(to),
            (None, Some(gid), None) if gid != 0 => Target::Group(gid),
            (None, None, Some(room)) if !room.is_empty() => Target::Room(room.to_owned()),
            _ => {
                return Err(malformed(
                    "message: exactly one of \"to\" (a mid), \"group\" (a gid) or \"room\" (a room id), not 0 or empty"
                        .into(),
                ))
            }
        };
        let kind = target.kind();
        let fail = |refusal: Refusal| (kind, refusal);
        if message.op < 1000 {
            return Err(fail(Refusal::Malformed(format!(
                "op: business ops are 1000 and up, got {}",
                message.op
            ))));
        }
        check_id(message.id).map_err(fail)?;
        let chat = &self.config.chat;
        if message.body.get().len() > chat.max_body {
            return Err(fail(Refusal::TooBig(format!(
                "body: {} bytes, at most {} are accepted",
                message.body.get().len(),
                chat.max_body
            ))));
        }
        if !self.send_rate.allow(req.mid) {
            return Err(fail(Refusal::Rate));
        }
        self.check_mutes(req.mid, &target).await.map_err(fail)?;
        let recipients = match &target {
            Target::Peer(to) => {
                let mut mids = vec![*to, req.mid];
                mids.dedup();
                mids
            }
            Target::Group(gid) => self.group_recipients(*gid, req.mid).await.map_err(fail)?,
            Target::Room(room) => {
                if *room != req.room && !req.rooms.contains(room) {
                    return Err(fail(Refusal::Forbidden(format!(
                        "not in room {room:?}: a session sends to the rooms it is in"
                    ))));
                }
                Vec::new()
            }
        };
        let filtered = self.filter_body(message.body).map_err(fail)?;
        let body: &RawValue = match &filtered {
            Some(masked) => masked,
            None => message.body,
        };
        let replaced = self
            .hooks
            .upstream(
                req.mid,
                &target,
                message.id,
                message.op,
                body,
                chat.max_body,
            )
            .await
            .map_err(fail)?;
        let body: &RawValue = replaced.as_deref().unwrap_or(body);
        let envelope = Envelope {
            from: req.mid,
            to: match target {
                Target::Peer(to) => Some(to),
                _ => None,
            },
            group: match target {
                Target::Group(gid) => Some(gid),
                _ => None,
            },
            room: match &target {
                Target::Room(room) => Some(room.as_str()),
                _ => None,
            },
            id: message.id,
            ts: self.now_ms(),
            body,
        };
        let envelope = serde_json::to_vec(&envelope)
            .map(Bytes::from)
            .map_err(|e| fail(Refusal::Unavailable(format!("envelope: {e}"))))?;
        match &target {
            Target::Room(room) => self
                .push_room(message.op, room, envelope)
                .await
                .map_err(|e| fail(e.into()))?,
            Target::Peer(_) | Target::Group(_) => {
                let key = format!("{}.{}", req.mid, message.id);
                self.store_message(
                    message.op,
                    &recipients,
                    envelope,
                    Some(&key),
                    req.mid,
                    Accepts::Filter,
                )
                .await
                .map_err(|e| {
                    warn!(mid = req.mid, id = message.id, error = %e, "sent message not stored");
                    fail(e.into())
                })?;
            }
        }
        Ok((kind, message.id.to_owned()))
    }

    /// The word filter's verdict on a body: `Some` masked body, `None`
    /// unchanged, or 422.
    fn filter_body(&self, body: &RawValue) -> Result<Option<Box<RawValue>>, Refusal> {
        match self.filter.check(body.get().as_bytes()) {
            Verdict::Clean => Ok(None),
            Verdict::Rejected { word } => Err(Refusal::Filtered(word)),
            Verdict::Masked(masked) => String::from_utf8(masked.to_vec())
                .ok()
                .and_then(|text| RawValue::from_string(text).ok())
                .map(Some)
                // Whole-body masking can break a JSON body's syntax.
                .ok_or_else(|| Refusal::Filtered("(masking left the body invalid)".into())),
        }
    }

    /// 403 when the sender is muted for everything or for this target.
    async fn check_mutes(&self, mid: i64, target: &Target) -> Result<(), Refusal> {
        let mutes = self.cached_mutes(mid).await?;
        if mutes.is_empty() {
            return Ok(());
        }
        let scope = match target {
            Target::Peer(_) => None,
            Target::Group(gid) => Some(MuteScope::Group(*gid).as_string()),
            Target::Room(room) => Some(MuteScope::Room(room.clone()).as_string()),
        };
        let now = self.now_ms();
        let muted = mutes.iter().find(|m| {
            m.until_ms.is_none_or(|until| until > now)
                && (m.scope == "all" || Some(&m.scope) == scope.as_ref())
        });
        match muted {
            Some(mute) => Err(Refusal::Forbidden(format!("muted ({})", mute.scope))),
            None => Ok(()),
        }
    }

    /// The members of `gid` a message from `from` goes to: 404 when the
    /// group has no member, 409 when `from` is not one, 413 when it is over
    /// `chat.group_max_members`.
    async fn group_recipients(&self, gid: i64, from: i64) -> Result<Vec<i64>, Refusal> {
        let members = match self.group_members(gid).await {
            Ok(members) => members,
            Err(GroupError::NoGroup(gid)) => return Err(Refusal::NoGroup(gid)),
            Err(GroupError::Logic(e)) => return Err(e.into()),
            Err(e @ GroupError::TooBig { .. }) => return Err(Refusal::TooBig(e.to_string())),
        };
        if !members.contains(&from) {
            return Err(Refusal::NotMember(gid));
        }
        let max = self.config.chat.group_max_members;
        if members.len() > max {
            return Err(Refusal::TooBig(format!(
                "group {gid} has {} members; messages go to groups of at most {max}",
                members.len()
            )));
        }
        Ok(members)
    }
}
