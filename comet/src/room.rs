//! [`Room`]: the members of one room within one bucket.
//!
//! A room exists once per bucket that holds a member of it (as in goim), so
//! a room push walks every bucket. Rooms are plain data inside the bucket's
//! lock: membership changes take the bucket's write lock, pushes its read lock.
//! An empty room is removed from its bucket and created again on demand (no
//! goim "room dropped" state).

use std::collections::HashMap;
use std::sync::Arc;

use crate::push::{Fanout, Push};
use crate::session::Session;

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
