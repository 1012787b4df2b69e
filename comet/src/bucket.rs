//! [`Bucket`]: one lock shard of the comet's sessions, rooms and client IPs.
//!
//! A session lives in the bucket chosen by the hash of its key (so a same-key
//! reconnect lands in the same bucket and can kick its predecessor). Its room
//! memberships (primary and joined: `room`) live in the same bucket. Lock
//! order: bucket, then session; sessions never take a bucket lock, and
//! nothing here awaits.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;

use parking_lot::RwLock;

use crate::push::{Fanout, Push};
use crate::room::{Room, RoomRefusal};
use crate::session::{Closed, Session};

/// One shard of sessions and rooms.
#[derive(Debug, Default)]
pub(crate) struct Bucket {
    inner: RwLock<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// key -> the session currently registered under it.
    sessions: HashMap<Arc<str>, Arc<Session>>,
    /// room id -> its local members. Never holds an empty room.
    rooms: HashMap<Arc<str>, Room>,
    /// client IP -> number of sessions from it (kicked ones included until
    /// their connection ends).
    ips: HashMap<IpAddr, u32>,
}

impl Inner {
    /// Adds `session` to the members of `room_id` (creating the room) and
    /// returns the room's id as the map holds it, for the session to share
    /// instead of allocating another. The caller records the membership.
    fn add_member(&mut self, session: &Arc<Session>, room_id: &str) -> Arc<str> {
        let id = match self.rooms.get_key_value(room_id) {
            Some((id, _)) => Arc::clone(id),
            None => Arc::from(room_id),
        };
        self.rooms.entry(Arc::clone(&id)).or_default().join(session);
        id
    }

    /// Removes `session` from the members of `room_id`; an emptied room
    /// goes. The caller forgets the membership.
    fn remove_member(&mut self, session: &Session, room_id: &str) {
        if let Some(room) = self.rooms.get_mut(room_id) {
            room.leave(session);
            if room.online() == 0 {
                self.rooms.remove(room_id);
            }
        }
    }

    /// Takes `session` out of every room it is in.
    fn leave_all(&mut self, session: &Session) {
        let rooms = session.update_rooms(std::mem::take);
        for id in rooms.iter() {
            self.remove_member(session, id);
        }
    }

    /// Makes `room_id` the session's primary room (it is not in it yet).
    fn join_primary(&mut self, session: &Arc<Session>, room_id: &str) {
        let id = self.add_member(session, room_id);
        session.update_rooms(|rooms| rooms.set_primary(Some(id)));
    }
}

impl Bucket {
    /// Registers `session` and puts it in `room`. Returns the session it
    /// replaced (same key), which has been taken out of its room; the caller
    /// closes it.
    pub(crate) fn put(&self, session: &Arc<Session>, room: Option<&str>) -> Option<Arc<Session>> {
        let mut inner = self.inner.write();
        let old = inner
            .sessions
            .insert(Arc::clone(&session.key), Arc::clone(session));
        if let Some(old) = &old {
            inner.leave_all(old);
        }
        *inner.ips.entry(session.ip).or_insert(0) += 1;
        if let Some(room) = room {
            inner.join_primary(session, room);
        }
        old
    }

    /// Unregisters `session` (once, when its connection ends): leaves its rooms,
    /// releases its IP, and removes the key entry only if it still points to
    /// this session. Returns whether it did (false for a kicked session).
    pub(crate) fn del(&self, session: &Arc<Session>) -> bool {
        let mut inner = self.inner.write();
        let current = inner
            .sessions
            .get(&*session.key)
            .is_some_and(|s| Arc::ptr_eq(s, session));
        if current {
            inner.sessions.remove(&*session.key);
        }
        if let Entry::Occupied(mut count) = inner.ips.entry(session.ip) {
            *count.get_mut() -= 1;
            if *count.get() == 0 {
                count.remove();
            }
        }
        inner.leave_all(session);
        current
    }

    /// op 12: moves `session`'s primary room to `room` (`None`: no primary
    /// room). Changing to the current primary room is a no-op; a room the
    /// session joined with op 24 becomes its primary room (it stays a member
    /// once); a closed session joins nothing.
    pub(crate) fn change_room(&self, session: &Arc<Session>, room: Option<&str>) {
        let mut inner = self.inner.write();
        let current = session.room();
        if current.as_deref() == room {
            return;
        }
        if let Some(old) = current {
            inner.remove_member(session, &old);
            session.update_rooms(|rooms| rooms.set_primary(None));
        }
        let Some(room) = room else {
            return;
        };
        if let Some(id) = session.update_rooms(|rooms| rooms.remove_other(room)) {
            // Already a member: only its kind changes.
            session.update_rooms(|rooms| rooms.set_primary(Some(id)));
        } else if session.closed().is_none() {
            inner.join_primary(session, room);
        }
    }

    /// op 24: adds `room` to the rooms `session` joined, at most
    /// `max_rooms` of them besides the primary room. A closed session joins
    /// nothing (and is not told: its connection is ending).
    pub(crate) fn join_room(
        &self,
        session: &Arc<Session>,
        room: &str,
        max_rooms: usize,
    ) -> Result<(), RoomRefusal> {
        let mut inner = self.inner.write();
        let (member, joined) =
            session.update_rooms(|rooms| (rooms.contains(room), rooms.others().len()));
        if member {
            return Err(RoomRefusal::AlreadyIn);
        }
        if joined >= max_rooms {
            return Err(RoomRefusal::Full(max_rooms));
        }
        if session.closed().is_some() {
            return Ok(());
        }
        let id = inner.add_member(session, room);
        session.update_rooms(|rooms| rooms.add_other(id));
        Ok(())
    }

    /// op 26: takes `session` out of `room`, a room it joined or its primary
    /// room (it then has none, as after an empty op 12).
    pub(crate) fn leave_room(&self, session: &Arc<Session>, room: &str) -> Result<(), RoomRefusal> {
        let mut inner = self.inner.write();
        let left = session.update_rooms(|rooms| {
            if rooms.primary().is_some_and(|id| &**id == room) {
                rooms.set_primary(None)
            } else {
                rooms.remove_other(room)
            }
        });
        match left {
            Some(id) => {
                inner.remove_member(session, &id);
                Ok(())
            }
            None => Err(RoomRefusal::NotIn),
        }
    }

    /// The session registered under `key`.
    pub(crate) fn session(&self, key: &str) -> Option<Arc<Session>> {
        self.inner.read().sessions.get(key).cloned()
    }

    /// Offers `push` to every session accepting `op` (every session for
    /// `None`); returns the number of sessions in the bucket (for broadcast
    /// pacing).
    pub(crate) fn broadcast(
        &self,
        push: &Arc<Push>,
        op: Option<i32>,
        capacity: usize,
        fanout: &mut Fanout,
    ) -> usize {
        let inner = self.inner.read();
        for session in inner.sessions.values() {
            fanout.add(session.push(push, op, capacity));
        }
        inner.sessions.len()
    }

    /// Offers `push` to every local member of `room` (no accepts filter).
    pub(crate) fn broadcast_room(
        &self,
        room: &str,
        push: &Arc<Push>,
        capacity: usize,
        fanout: &mut Fanout,
    ) {
        if let Some(room) = self.inner.read().rooms.get(room) {
            room.push(push, capacity, fanout);
        }
    }

    /// `(local members, cluster count from logic)` of `room`, if it has
    /// members here.
    pub(crate) fn room_online(&self, room: &str) -> Option<(usize, i32)> {
        self.inner
            .read()
            .rooms
            .get(room)
            .map(|r| (r.online(), r.all_online))
    }

    /// Adds this bucket's member count of each room to `counts`.
    pub(crate) fn add_room_counts(&self, counts: &mut HashMap<String, i32>) {
        for (id, room) in &self.inner.read().rooms {
            let online = i32::try_from(room.online()).unwrap_or(i32::MAX);
            let count = counts.entry(id.to_string()).or_insert(0);
            *count = count.saturating_add(online);
        }
    }

    /// Sets every room's cluster count from logic's report (0 if absent).
    pub(crate) fn set_all_online(&self, all: &HashMap<String, i32>) {
        for (id, room) in &mut self.inner.write().rooms {
            room.all_online = all.get(&**id).copied().unwrap_or(0);
        }
    }

    /// Number of registered sessions.
    /// Closes every session of the bucket with `reason` (their connection
    /// tasks then unregister them).
    pub(crate) fn close_all(&self, reason: Closed) {
        for session in self.inner.read().sessions.values() {
            session.close(reason);
        }
    }

    pub(crate) fn session_count(&self) -> usize {
        self.inner.read().sessions.len()
    }

    /// Adds this bucket's client IPs and room ids to the sets.
    pub(crate) fn collect(&self, ips: &mut HashSet<IpAddr>, rooms: &mut HashSet<Arc<str>>) {
        let inner = self.inner.read();
        ips.extend(inner.ips.keys().copied());
        rooms.extend(inner.rooms.keys().cloned());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::push::Enqueue;
    use bytes::Bytes;
    use std::net::Ipv4Addr;

    fn session(id: u64, key: &str) -> Arc<Session> {
        Arc::new(Session::new(
            id,
            key.into(),
            1,
            IpAddr::V4(Ipv4Addr::new(10, 0, 0, id as u8)),
            &[1000],
        ))
    }

    fn push() -> Arc<Push> {
        Arc::new(Push {
            tcp: Bytes::from_static(b"t"),
            ws: Bytes::from_static(b"w"),
        })
    }

    #[test]
    fn same_key_replaces_and_old_del_keeps_new() {
        let bucket = Bucket::default();
        let old = session(1, "k");
        let new = session(2, "k");
        assert!(bucket.put(&old, Some("r")).is_none());
        let kicked = bucket.put(&new, Some("r")).unwrap();
        assert!(Arc::ptr_eq(&kicked, &old));
        // The kicked session left the room at once.
        assert_eq!(bucket.room_online("r"), Some((1, 0)));
        assert_eq!(old.room(), None);
        kicked.close(Closed::Kicked);
        assert!(!bucket.del(&old), "a kicked session is not the current one");
        assert!(Arc::ptr_eq(&bucket.session("k").unwrap(), &new));
        assert_eq!(bucket.room_online("r"), Some((1, 0)));
        let (mut ips, mut rooms) = (HashSet::new(), HashSet::new());
        bucket.collect(&mut ips, &mut rooms);
        assert_eq!(ips.len(), 1);
        assert!(bucket.del(&new));
        assert!(bucket.session("k").is_none());
        assert_eq!(bucket.room_online("r"), None, "empty room is removed");
        let (mut ips, mut rooms) = (HashSet::new(), HashSet::new());
        bucket.collect(&mut ips, &mut rooms);
        assert!(ips.is_empty() && rooms.is_empty());
    }

    #[test]
    fn change_room_moves_removes_and_recreates() {
        let bucket = Bucket::default();
        let a = session(1, "a");
        let b = session(2, "b");
        bucket.put(&a, Some("r1"));
        bucket.put(&b, Some("r1"));
        assert_eq!(bucket.room_online("r1"), Some((2, 0)));
        // Changing to the current room is a no-op, even when alone in it.
        bucket.change_room(&a, Some("r1"));
        assert_eq!(bucket.room_online("r1"), Some((2, 0)));
        bucket.change_room(&a, Some("r2"));
        bucket.change_room(&b, Some("r2"));
        assert_eq!(bucket.room_online("r1"), None);
        assert_eq!(bucket.room_online("r2"), Some((2, 0)));
        // Re-creating a removed room works.
        bucket.change_room(&a, Some("r1"));
        assert_eq!(bucket.room_online("r1"), Some((1, 0)));
        bucket.change_room(&a, None);
        assert_eq!(bucket.room_online("r1"), None);
        assert_eq!(a.room(), None);
        let mut counts = HashMap::new();
        bucket.add_room_counts(&mut counts);
        assert_eq!(counts, HashMap::from([("r2".to_owned(), 1)]));
    }

    fn room_counts(bucket: &Bucket) -> HashMap<String, i32> {
        let mut counts = HashMap::new();
        bucket.add_room_counts(&mut counts);
        counts
    }

    fn counts(pairs: &[(&str, i32)]) -> HashMap<String, i32> {
        pairs.iter().map(|(r, c)| (r.to_string(), *c)).collect()
    }

    fn rooms_of(session: &Session) -> (Option<String>, Vec<String>) {
        let rooms = session.rooms();
        (
            rooms.primary().map(|r| r.to_string()),
            rooms.others().iter().map(|r| r.to_string()).collect(),
        )
    }

    #[test]
    fn join_and_leave_rooms_up_to_the_cap() {
        let bucket = Bucket::default();
        let a = session(1, "a");
        let b = session(2, "b");
        bucket.put(&a, Some("p"));
        bucket.put(&b, None);
        assert_eq!(bucket.join_room(&a, "p", 2), Err(RoomRefusal::AlreadyIn));
        assert_eq!(bucket.join_room(&a, "x", 2), Ok(()));
        assert_eq!(bucket.join_room(&a, "x", 2), Err(RoomRefusal::AlreadyIn));
        assert_eq!(bucket.join_room(&a, "y", 2), Ok(()));
        // The primary room does not count against the cap.
        assert_eq!(bucket.join_room(&a, "z", 2), Err(RoomRefusal::Full(2)));
        assert_eq!(bucket.join_room(&b, "x", 2), Ok(()));
        assert_eq!(
            room_counts(&bucket),
            counts(&[("p", 1), ("x", 2), ("y", 1)])
        );
        assert_eq!(
            rooms_of(&a),
            (Some("p".into()), vec!["x".into(), "y".into()])
        );
        // A room push reaches a member once, whichever way it joined.
        let p = push();
        let mut fanout = Fanout::default();
        bucket.broadcast_room("x", &p, 8, &mut fanout);
        bucket.broadcast_room("p", &p, 8, &mut fanout);
        assert_eq!(fanout.queued, 3);
        assert_eq!(a.take_queue().unwrap().len(), 2);
        assert_eq!(b.take_queue().unwrap().len(), 1);

        assert_eq!(bucket.leave_room(&a, "z"), Err(RoomRefusal::NotIn));
        assert_eq!(bucket.leave_room(&a, "x"), Ok(()));
        assert_eq!(bucket.leave_room(&a, "x"), Err(RoomRefusal::NotIn));
        assert_eq!(
            bucket.join_room(&a, "z", 2),
            Ok(()),
            "a place is free again"
        );
        assert_eq!(bucket.leave_room(&b, "x"), Ok(()));
        assert_eq!(bucket.room_online("x"), None, "the emptied room is gone");
        // Leaving the primary room with op 26 leaves no primary room.
        assert_eq!(bucket.leave_room(&a, "p"), Ok(()));
        assert_eq!(rooms_of(&a), (None, vec!["y".into(), "z".into()]));
        assert_eq!(room_counts(&bucket), counts(&[("y", 1), ("z", 1)]));
        // A cap of 0 allows no joined room, only the primary one.
        bucket.change_room(&b, Some("q"));
        assert_eq!(bucket.join_room(&b, "r", 0), Err(RoomRefusal::Full(0)));
        assert_eq!(rooms_of(&b), (Some("q".into()), vec![]));
    }

    #[test]
    fn change_room_replaces_only_the_primary_room() {
        let bucket = Bucket::default();
        let a = session(1, "a");
        bucket.put(&a, Some("p"));
        bucket.join_room(&a, "x", 4).unwrap();
        bucket.join_room(&a, "y", 4).unwrap();
        bucket.change_room(&a, Some("q"));
        assert_eq!(
            rooms_of(&a),
            (Some("q".into()), vec!["x".into(), "y".into()])
        );
        assert_eq!(
            room_counts(&bucket),
            counts(&[("q", 1), ("x", 1), ("y", 1)])
        );
        // Into a joined room: it becomes the primary room, a member once.
        bucket.change_room(&a, Some("x"));
        assert_eq!(rooms_of(&a), (Some("x".into()), vec!["y".into()]));
        assert_eq!(room_counts(&bucket), counts(&[("x", 1), ("y", 1)]));
        // Empty body: out of the primary room only.
        bucket.change_room(&a, None);
        assert_eq!(rooms_of(&a), (None, vec!["y".into()]));
        assert_eq!(room_counts(&bucket), counts(&[("y", 1)]));
    }

    #[test]
    fn disconnect_and_kick_leave_every_room() {
        let bucket = Bucket::default();
        let old = session(1, "k");
        let other = session(2, "o");
        bucket.put(&old, Some("p"));
        bucket.put(&other, Some("p"));
        bucket.join_room(&old, "x", 4).unwrap();
        bucket.join_room(&old, "y", 4).unwrap();
        bucket.join_room(&other, "x", 4).unwrap();
        // Kicked by a newer connection of its key: out of all its rooms at once.
        let new = session(3, "k");
        bucket.put(&new, None).unwrap().close(Closed::Kicked);
        assert_eq!(rooms_of(&old), (None, vec![]));
        assert_eq!(room_counts(&bucket), counts(&[("p", 1), ("x", 1)]));
        // A closed session joins nothing.
        assert_eq!(bucket.join_room(&old, "z", 4), Ok(()));
        bucket.change_room(&old, Some("z"));
        assert_eq!(bucket.room_online("z"), None);
        assert!(!bucket.del(&old));
        bucket.del(&other);
        bucket.del(&new);
        let (mut ips, mut rooms) = (HashSet::new(), HashSet::new());
        bucket.collect(&mut ips, &mut rooms);
        assert!(rooms.is_empty() && ips.is_empty());
        assert!(bucket.inner.read().rooms.is_empty());
    }

    #[test]
    fn all_online_is_set_and_cleared() {
        let bucket = Bucket::default();
        let a = session(1, "a");
        bucket.put(&a, Some("r"));
        bucket.set_all_online(&HashMap::from([("r".to_owned(), 42)]));
        assert_eq!(bucket.room_online("r"), Some((1, 42)));
        bucket.set_all_online(&HashMap::new());
        assert_eq!(bucket.room_online("r"), Some((1, 0)));
    }

    #[test]
    fn broadcast_filters_room_push_does_not() {
        let bucket = Bucket::default();
        let a = session(1, "a");
        bucket.put(&a, Some("r"));
        let p = push();
        let mut fanout = Fanout::default();
        assert_eq!(bucket.broadcast(&p, Some(2000), 8, &mut fanout), 1);
        assert_eq!(fanout.filtered, 1);
        bucket.broadcast_room("r", &p, 8, &mut fanout);
        assert_eq!(fanout.queued, 1);
        assert_eq!(a.push(&p, Some(1000), 8), Enqueue::Queued);
    }
}
