//! [`Memberships`]: the rooms one session is in, held by the session and
//! changed by its bucket together with the bucket's [`Room`](crate::room::Room)
//! maps (docs/protocol.md, "Rooms").

use std::sync::Arc;

/// The rooms one session is in, each once: the primary room and the rooms
/// joined with op 24 ("others"). Sized for the usual session in 0 or 1 room:
/// the others live in a box that exists only while there are some, so a
/// session pays one pointer for them.
///
/// Changed only by its bucket, under the bucket's write lock, which keeps it
/// equal to the session's entries in the bucket's [`Room`] maps.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Memberships {
    primary: Option<Arc<str>>,
    others: Option<Box<Others>>,
}

/// The rooms joined with op 24, in joining order; never empty.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Others(Vec<Arc<str>>);

impl Memberships {
    /// The primary room.
    pub(crate) fn primary(&self) -> Option<&Arc<str>> {
        self.primary.as_ref()
    }

    /// The rooms joined with op 24, in joining order.
    pub(crate) fn others(&self) -> &[Arc<str>] {
        match &self.others {
            Some(others) => &others.0,
            None => &[],
        }
    }

    /// Every room, the primary first.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Arc<str>> {
        self.primary.iter().chain(self.others())
    }

    /// Whether the session is in `room`, either way.
    pub(crate) fn contains(&self, room: &str) -> bool {
        self.iter().any(|id| &**id == room)
    }

    /// Replaces the primary room, returning the old one.
    pub(crate) fn set_primary(&mut self, room: Option<Arc<str>>) -> Option<Arc<str>> {
        std::mem::replace(&mut self.primary, room)
    }

    /// Adds a joined room (not already in the set).
    pub(crate) fn add_other(&mut self, room: Arc<str>) {
        match &mut self.others {
            Some(others) => others.0.push(room),
            None => self.others = Some(Box::new(Others(vec![room]))),
        }
    }

    /// Removes a joined room and gives it back; the box goes with the last.
    pub(crate) fn remove_other(&mut self, room: &str) -> Option<Arc<str>> {
        let others = self.others.as_mut()?;
        let index = others.0.iter().position(|id| &**id == room)?;
        let removed = others.0.remove(index);
        if others.0.is_empty() {
            self.others = None;
        }
        Some(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memberships_stay_small_and_free_the_box() {
        // One pointer more than the primary room alone.
        assert_eq!(
            std::mem::size_of::<Memberships>(),
            std::mem::size_of::<Option<Arc<str>>>() + std::mem::size_of::<usize>()
        );
        let mut rooms = Memberships::default();
        assert_eq!(rooms.set_primary(Some("a".into())), None);
        rooms.add_other("b".into());
        rooms.add_other("c".into());
        assert!(rooms.contains("a") && rooms.contains("b") && rooms.contains("c"));
        assert!(!rooms.contains("d"));
        let all: Vec<&str> = rooms.iter().map(|r| &**r).collect();
        assert_eq!(all, ["a", "b", "c"]);
        assert_eq!(rooms.remove_other("a"), None, "the primary is not an other");
        assert_eq!(rooms.remove_other("b").as_deref(), Some("b"));
        assert_eq!(rooms.remove_other("c").as_deref(), Some("c"));
        assert!(rooms.others.is_none(), "no box without others");
        assert_eq!(rooms.set_primary(None).as_deref(), Some("a"));
        assert_eq!(rooms, Memberships::default());
    }
}
