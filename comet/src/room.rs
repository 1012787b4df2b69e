//! [`Room`]: the members of one room within one bucket, and what a room id
//! is (`room_id`, the refusals of ops 24 and 26). The rooms one session is in
//! are its [`Memberships`](crate::memberships::Memberships).
//!
//! A room exists once per bucket that holds a member of it (as in goim), so
//! a room push walks every bucket. Rooms are plain data inside the bucket's
//! lock: membership changes take the bucket's write lock, pushes its read lock.
//! An empty room is removed from its bucket and created again on demand (no
//! goim "room dropped" state).
//!
//! A session is a member of each of its rooms once, whichever way it got
//! there: its primary room (the token's `room_id`, op 12; the room whose count
//! op 3 carries) or a room joined with op 24 (docs/protocol.md, "Rooms").
//! Both kinds sit in the same [`Room`] maps, so a room push, the online
//! counts and the room list see every membership alike.

use std::collections::HashMap;
use std::sync::Arc;

use crate::push::{Fanout, Push};
use crate::session::Session;

/// Longest room id op 24 and op 26 take, in bytes (op 12 and the token
/// keep goim's rule: any length that fits the frame).
pub(crate) const MAX_ROOM_ID: usize = 256;

/// Why an op 24 (join) or op 26 (leave) was refused: the reply's `code` and
/// `reason` (docs/protocol.md, "Rooms").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RoomRefusal {
    /// The body is not a room id.
    BadRoomId(&'static str),
    /// op 24 for a room the session is in already (either way).
    AlreadyIn,
    /// op 26 for a room the session is not in.
    NotIn,
    /// op 24 beyond this many joined rooms.
    Full(usize),
    /// op 24 to a room logic could not record for this comet now (the
    /// room announce failed): joining it could miss its pushes.
    Unavailable,
}

impl RoomRefusal {
    /// The reply's `code`, an HTTP status by meaning.
    pub(crate) fn code(self) -> u16 {
        match self {
            RoomRefusal::BadRoomId(_) => 400,
            RoomRefusal::AlreadyIn | RoomRefusal::NotIn => 409,
            RoomRefusal::Full(_) => 413,
            RoomRefusal::Unavailable => 503,
        }
    }

    /// The reply's `reason`.
    pub(crate) fn reason(self) -> String {
        match self {
            RoomRefusal::BadRoomId(why) => format!("bad room id: {why}"),
            RoomRefusal::AlreadyIn => "already in this room".to_owned(),
            RoomRefusal::NotIn => "not in this room".to_owned(),
            RoomRefusal::Full(max) => {
                format!("too many rooms: at most {max} besides the primary room")
            }
            RoomRefusal::Unavailable => {
                "unavailable: the room could not be recorded now, join again later".to_owned()
            }
        }
    }

    /// The metric label of the outcome.
    pub(crate) fn label(self) -> &'static str {
        match self {
            RoomRefusal::BadRoomId(_) => "bad_room_id",
            RoomRefusal::AlreadyIn => "already_in",
            RoomRefusal::NotIn => "not_in",
            RoomRefusal::Full(_) => "full",
            RoomRefusal::Unavailable => "unavailable",
        }
    }
}

/// The room id of an op 24 or op 26 body: 1 to [`MAX_ROOM_ID`] bytes of
/// UTF-8, taken as it is (no trimming: room ids are free strings).
pub(crate) fn room_id(body: &[u8]) -> Result<&str, RoomRefusal> {
    if body.is_empty() {
        return Err(RoomRefusal::BadRoomId("empty"));
    }
    if body.len() > MAX_ROOM_ID {
        return Err(RoomRefusal::BadRoomId("longer than 256 bytes"));
    }
    std::str::from_utf8(body).map_err(|_| RoomRefusal::BadRoomId("not utf-8"))
}

/// The local members of a room in one bucket.
#[derive(Debug, Default)]
pub(crate) struct Room {
    /// Members by connection id (a kicked session and its successor share a
    /// key but not an id).
    members: HashMap<u64, Arc<Session>>,
    /// The cluster-wide member count, as last reported by logic (0 if unknown).
    pub(crate) all_online: i32,
}

impl Room {
    /// Adds a member.
    pub(crate) fn join(&mut self, session: &Arc<Session>) {
        self.members.insert(session.id, Arc::clone(session));
    }

    /// Removes a member; returns whether it was one.
    pub(crate) fn leave(&mut self, session: &Session) -> bool {
        self.members.remove(&session.id).is_some()
    }

    /// Local member count.
    pub(crate) fn online(&self) -> usize {
        self.members.len()
    }

    /// Offers `push` to every member; room pushes do not filter on accepts.
    pub(crate) fn push(&self, push: &Arc<Push>, capacity: usize, fanout: &mut Fanout) {
        for session in self.members.values() {
            fanout.add(session.push(push, None, capacity));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_ids_and_refusals() {
        assert_eq!(room_id(b"live://1"), Ok("live://1"));
        assert_eq!(room_id(b" x "), Ok(" x "));
        assert_eq!(room_id(&[b'r'; MAX_ROOM_ID]).map(str::len), Ok(MAX_ROOM_ID));
        for bad in [&b""[..], &[b'r'; MAX_ROOM_ID + 1][..], &b"\xff"[..]] {
            let refusal = room_id(bad).unwrap_err();
            assert_eq!(refusal.code(), 400, "{bad:?}");
        }
        assert_eq!(RoomRefusal::AlreadyIn.code(), 409);
        assert_eq!(RoomRefusal::NotIn.code(), 409);
        assert_eq!(RoomRefusal::Full(16).code(), 413);
        assert!(RoomRefusal::Full(16).reason().contains("16"));
    }
}
