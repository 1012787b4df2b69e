//! [`Hub`]: the comet's registry of sessions and the push operations on it.
//! Owns the buckets (sessions by key, room memberships), registering and
//! kicking sessions, room changes (op 12), joins and leaves (ops 24, 26),
//! the push operations job calls (goim's `goim.comet.Comet`: PushMsg,
//! Broadcast, BroadcastRoom, Rooms) and the counts (connections, IPs, rooms,
//! room online counts).
//!
//! Connections and the gRPC service use the hub; it knows nothing of
//! sockets, listeners or logic.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use rim_proto::pb::comet::{BroadcastReq, BroadcastRoomReq, PushMsgReq, RoomsReply};
use rim_proto::Op;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info};

use crate::bucket::Bucket;
use crate::config::Config;
use crate::error::PushError;
use crate::im;
use crate::metrics;
use crate::push::{Enqueue, Fanout, Push};
use crate::room::RoomRefusal;
use crate::session::{Closed, Session};

/// Connection, IP and room counts of one comet.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Authenticated connections (sessions).
    pub connections: u64,
    /// Distinct client IP addresses among them.
    pub ips: u64,
    /// Rooms with at least one local member.
    pub rooms: u64,
}

/// The sessions of one comet, in buckets (lock shards by key).
pub struct Hub {
    buckets: Box<[Bucket]>,
    /// Capacity of each session's queue (config `session_queue`).
    session_queue: usize,
    /// Rooms a session may join with op 24 besides its primary room (config
    /// `max_rooms`).
    max_rooms: usize,
    /// Paced broadcasts run on the comet's tracker, and stop at shutdown.
    tracker: TaskTracker,
    closing: CancellationToken,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("buckets", &self.buckets.len())
            .finish_non_exhaustive()
    }
}

impl Hub {
    /// An empty hub with `config.buckets` buckets; paced broadcasts run on
    /// `tracker` and stop when `closing` is cancelled.
    pub(crate) fn new(
        config: &Config,
        tracker: TaskTracker,
        closing: CancellationToken,
    ) -> Arc<Hub> {
        Arc::new(Hub {
            buckets: (0..config.buckets).map(|_| Bucket::default()).collect(),
            session_queue: config.session_queue,
            max_rooms: config.max_rooms,
            tracker,
            closing,
        })
    }

    /// Capacity of each session's queue, in messages.
    pub(crate) fn session_queue(&self) -> usize {
        self.session_queue
    }

    /// goim `Comet.PushMsg`: queues `proto` for each key's session, if it is
    /// here and accepts `proto_op`. A full session queue disconnects that
    /// session and does not stop the loop over the other keys.
    ///
    /// rim: a stored message (`mailbox_seq`, `mailbox_epoch`) goes to IM
    /// sessions through their gate, unfiltered, and to other sessions with
    /// header seq 0, filtered; an `im_only` push (op 23) reaches IM sessions
    /// only; an `unfiltered` push (goim v1's API) skips the accepts filter.
    pub fn push_msg(&self, req: PushMsgReq) -> Result<(), PushError> {
        if req.keys.is_empty() {
            return Err(PushError::Invalid("no keys".to_owned()));
        }
        let proto = req
            .proto
            .ok_or_else(|| PushError::Invalid("proto missing".to_owned()))?;
        ::metrics::counter!(metrics::PUSH_REQUESTS, "kind" => "keys").increment(1);
        let stored = req.mailbox_seq != 0 && !req.mailbox_epoch.is_empty();
        let filter = (!req.unfiltered).then_some(req.proto_op);
        // Sessions that are not IM sessions get a stored frame with seq 0,
        // as any keyed push; encoded only if one of them is addressed.
        let plain_proto = stored.then(|| {
            let mut plain = proto.clone();
            if plain.op == Op::Raw.code() {
                plain.body = im::without_seq(&plain.body);
            } else {
                plain.seq = 0;
            }
            plain
        });
        let push = Push::encode(proto);
        let mut plain: Option<Arc<Push>> = None;
        let capacity = self.session_queue;
        let mut fanout = Fanout::default();
        let mut missing = 0;
        for key in &req.keys {
            let Some(session) = self.bucket(key).session(key) else {
                debug!(key = %key, op = req.proto_op, "keyed push dropped: no session here");
                missing += 1;
                continue;
            };
            let outcome = if req.im_only {
                if session.im {
                    session.push(&push, None, capacity)
                } else {
                    Enqueue::NotAccepted
                }
            } else if stored && session.im {
                session.push_stored(&push, req.mailbox_seq, &req.mailbox_epoch, capacity)
            } else if let Some(plain_proto) = &plain_proto {
                let plain = plain.get_or_insert_with(|| Push::encode(plain_proto.clone()));
                session.push(plain, filter, capacity)
            } else {
                session.push(&push, filter, capacity)
            };
            fanout.add(outcome);
        }
        metrics::dropped(metrics::DROP_NO_SESSION, missing);
        fanout.record("keys");
        Ok(())
    }

    /// goim `Comet.Broadcast`: queues `proto` for every session accepting
    /// `proto_op` (rim: every session if `unfiltered`). With `speed <= 0` this walks all buckets before returning.
    /// With `speed > 0` it returns at once and a tracked task walks the
    /// buckets, pausing `sessions in the bucket / speed` seconds after each.
    pub fn broadcast(self: &Arc<Self>, req: BroadcastReq) -> Result<(), PushError> {
        let proto = req
            .proto
            .ok_or_else(|| PushError::Invalid("proto missing".to_owned()))?;
        ::metrics::counter!(metrics::PUSH_REQUESTS, "kind" => "broadcast").increment(1);
        let push = Push::encode(proto);
        let op = (!req.unfiltered).then_some(req.proto_op);
        if req.speed <= 0 {
            self.broadcast_buckets(&push, op);
            return Ok(());
        }
        let speed = f64::from(req.speed);
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            debug!("broadcast outside a runtime: delivering without pacing");
            self.broadcast_buckets(&push, op);
            return Ok(());
        };
        let hub = Arc::clone(self);
        self.tracker.spawn_on(
            async move {
                let mut fanout = Fanout::default();
                for bucket in hub.buckets.iter() {
                    let sessions = bucket.broadcast(&push, op, hub.session_queue, &mut fanout);
                    let pause = Duration::from_secs_f64(sessions as f64 / speed);
                    if pause.is_zero() {
                        continue;
                    }
                    tokio::select! {
                        () = hub.closing.cancelled() => {
                            debug!(op = ?op, "paced broadcast stopped by shutdown");
                            break;
                        }
                        () = tokio::time::sleep(pause) => {}
                    }
                }
                fanout.record("broadcast");
            },
            &runtime,
        );
        Ok(())
    }

    fn broadcast_buckets(&self, push: &Arc<Push>, op: Option<i32>) {
        let mut fanout = Fanout::default();
        for bucket in self.buckets.iter() {
            bucket.broadcast(push, op, self.session_queue, &mut fanout);
        }
        fanout.record("broadcast");
    }

    /// goim `Comet.BroadcastRoom`: queues `proto` for every member of the room
    /// in every bucket; room pushes ignore accepts.
    pub fn broadcast_room(&self, req: BroadcastRoomReq) -> Result<(), PushError> {
        if req.room_id.is_empty() {
            return Err(PushError::Invalid("room id empty".to_owned()));
        }
        let proto = req
            .proto
            .ok_or_else(|| PushError::Invalid("proto missing".to_owned()))?;
        ::metrics::counter!(metrics::PUSH_REQUESTS, "kind" => "room").increment(1);
        let push = Push::encode(proto);
        let mut fanout = Fanout::default();
        for bucket in self.buckets.iter() {
            bucket.broadcast_room(&req.room_id, &push, self.session_queue, &mut fanout);
        }
        fanout.record("room");
        Ok(())
    }

    /// goim `Comet.Rooms`: the rooms with local members.
    pub fn rooms(&self) -> RoomsReply {
        let (mut ips, mut rooms) = (HashSet::new(), HashSet::new());
        for bucket in self.buckets.iter() {
            bucket.collect(&mut ips, &mut rooms);
        }
        RoomsReply {
            rooms: rooms.into_iter().map(|id| (id.to_string(), true)).collect(),
        }
    }

    /// Connection count, distinct IP count and room count.
    pub fn stats(&self) -> Stats {
        let (mut ips, mut rooms): (HashSet<IpAddr>, HashSet<Arc<str>>) =
            (HashSet::new(), HashSet::new());
        let mut connections = 0;
        for bucket in self.buckets.iter() {
            connections += bucket.session_count() as u64;
            bucket.collect(&mut ips, &mut rooms);
        }
        Stats {
            connections,
            ips: ips.len() as u64,
            rooms: rooms.len() as u64,
        }
    }

    /// Closes every session (at shutdown): their connections write what
    /// was queued and end.
    pub(crate) fn close_all(&self, reason: Closed) {
        for bucket in self.buckets.iter() {
            bucket.close_all(reason);
        }
    }

    /// Local member counts by room, for the online report.
    pub(crate) fn room_counts(&self) -> HashMap<String, i32> {
        let mut room_count = HashMap::new();
        for bucket in self.buckets.iter() {
            bucket.add_room_counts(&mut room_count);
        }
        room_count
    }

    /// Stores the cluster's room counts from logic's online reply.
    pub(crate) fn set_all_online(&self, all_room_count: &HashMap<String, i32>) {
        for bucket in self.buckets.iter() {
            bucket.set_all_online(all_room_count);
        }
    }

    fn bucket(&self, key: &str) -> &Bucket {
        &self.buckets[self.bucket_index(key)]
    }

    fn bucket_index(&self, key: &str) -> usize {
        // FNV-1a: fast and good enough for spreading keys over a few locks;
        // placement is internal to this process.
        let mut hash: u32 = 0x811c_9dc5;
        for byte in key.as_bytes() {
            hash ^= u32::from(*byte);
            hash = hash.wrapping_mul(0x0100_0193);
        }
        hash as usize % self.buckets.len()
    }

    /// Registers a freshly authenticated session in its bucket and room,
    /// kicking an older session with the same key.
    pub(crate) fn register(&self, session: &Arc<Session>, room: Option<&str>) {
        let Some(old) = self.bucket(&session.key).put(session, room) else {
            return;
        };
        let lost = old.close(Closed::Kicked);
        metrics::dropped(metrics::DROP_KICKED, lost as u64);
        info!(
            conn.id = session.id,
            key = %session.key,
            mid = session.mid,
            kicked.conn.id = old.id,
            lost,
            "same key connected again: kicking the older connection"
        );
    }

    /// Unregisters a session whose connection ended; true if the key entry
    /// still pointed to it (so logic's mapping is its own to delete).
    pub(crate) fn unregister(&self, session: &Arc<Session>) -> bool {
        self.bucket(&session.key).del(session)
    }

    /// op 12: moves a session's primary room (`None`: leave it).
    pub(crate) fn change_room(&self, session: &Arc<Session>, room: Option<&str>) {
        self.bucket(&session.key).change_room(session, room);
    }

    /// op 24: a session joins one more room (at most `max_rooms` besides
    /// its primary room).
    pub(crate) fn join_room(&self, session: &Arc<Session>, room: &str) -> Result<(), RoomRefusal> {
        self.bucket(&session.key)
            .join_room(session, room, self.max_rooms)
    }

    /// Whether op 24 would refuse `session` joining `room` as things are
    /// (in it already, or at the cap), without joining: checked before the
    /// room is announced, so a refused join costs logic nothing. Only the
    /// session's own connection changes its rooms, so the answer holds
    /// until that connection joins.
    pub(crate) fn check_join(&self, session: &Session, room: &str) -> Result<(), RoomRefusal> {
        let rooms = session.rooms();
        if rooms.contains(room) {
            return Err(RoomRefusal::AlreadyIn);
        }
        if rooms.others().len() >= self.max_rooms {
            return Err(RoomRefusal::Full(self.max_rooms));
        }
        Ok(())
    }

    /// op 26: a session leaves one of its rooms (the primary one included).
    pub(crate) fn leave_room(&self, session: &Arc<Session>, room: &str) -> Result<(), RoomRefusal> {
        self.bucket(&session.key).leave_room(session, room)
    }

    /// The online count a heartbeat reply carries for `room`: the cluster
    /// count from logic if known (> 0), else this comet's local count.
    pub(crate) fn room_online(&self, room: &str) -> i32 {
        let mut local: usize = 0;
        let mut all = 0;
        for bucket in self.buckets.iter() {
            if let Some((members, cluster)) = bucket.room_online(room) {
                local += members;
                all = all.max(cluster);
            }
        }
        if all > 0 {
            all
        } else {
            i32::try_from(local).unwrap_or(i32::MAX)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use rim_proto::pb::protocol::Proto;
    use tokio::time::Instant;

    use super::*;

    fn hub(config: Config) -> Arc<Hub> {
        Hub::new(&config, TaskTracker::new(), CancellationToken::new())
    }

    fn session(hub: &Hub, id: u64, key: &str, accepts: &[i32]) -> Arc<Session> {
        let s = Arc::new(Session::new(
            id,
            key.into(),
            id as i64,
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            accepts,
        ));
        hub.register(&s, Some("live://1"));
        s
    }

    fn raw(op: i32, body: &'static [u8]) -> Option<Proto> {
        Some(Proto {
            ver: 1,
            op: 9,
            seq: 0,
            body: rim_proto::encode_raw_push(op, body),
        })
    }

    #[test]
    fn push_requests_are_validated() {
        let c = hub(Config::default());
        let err = c
            .push_msg(PushMsgReq {
                keys: vec![],
                proto_op: 1000,
                proto: raw(1000, b"x"),
                ..Default::default()
            })
            .unwrap_err();
        assert!(matches!(err, PushError::Invalid(_)));
        assert!(c
            .push_msg(PushMsgReq {
                keys: vec!["k".into()],
                proto_op: 1000,
                proto: None,
                ..Default::default()
            })
            .is_err());
        assert!(c
            .broadcast(BroadcastReq {
                proto_op: 1,
                proto: None,
                speed: 0,
                unfiltered: false,
            })
            .is_err());
        assert!(c
            .broadcast_room(BroadcastRoomReq {
                room_id: String::new(),
                proto: raw(1000, b"x"),
            })
            .is_err());
        assert!(c
            .broadcast_room(BroadcastRoomReq {
                room_id: "r".into(),
                proto: None,
            })
            .is_err());
    }

    #[test]
    fn push_msg_continues_after_a_full_queue() {
        let c = hub(Config {
            session_queue: 1,
            ..Config::default()
        });
        let a = session(&c, 1, "a", &[1000]);
        let b = session(&c, 2, "b", &[1000]);
        let req = |body| PushMsgReq {
            keys: vec!["a".into(), "missing".into(), "b".into()],
            proto_op: 1000,
            proto: raw(1000, body),
            ..Default::default()
        };
        c.push_msg(req(b"1")).unwrap();
        // b's queue is drained; a's is not, so the next push overflows a only.
        assert_eq!(b.take_queue().unwrap().len(), 1);
        c.push_msg(req(b"2")).unwrap();
        assert_eq!(a.take_queue(), Err(Closed::SlowClient));
        let got = b.take_queue().unwrap();
        assert_eq!(got.len(), 1, "the loop went on past the slow session");
        assert_eq!(&got[0].tcp[16..], b"2");
    }

    #[test]
    fn broadcast_filters_on_accepts_room_does_not() {
        let c = hub(Config::default());
        let a = session(&c, 1, "a", &[1000]);
        let b = session(&c, 2, "b", &[2000]);
        c.broadcast(BroadcastReq {
            proto_op: 1000,
            proto: raw(1000, b"x"),
            speed: 0,
            unfiltered: false,
        })
        .unwrap();
        assert_eq!(a.take_queue().unwrap().len(), 1);
        assert!(b.take_queue().unwrap().is_empty());
        c.broadcast_room(BroadcastRoomReq {
            room_id: "live://1".into(),
            proto: raw(3000, b"y"),
        })
        .unwrap();
        assert_eq!(a.take_queue().unwrap().len(), 1);
        assert_eq!(b.take_queue().unwrap().len(), 1);
        assert_eq!(
            c.stats(),
            Stats {
                connections: 2,
                ips: 1,
                rooms: 1
            }
        );
        assert_eq!(
            c.rooms().rooms,
            HashMap::from([("live://1".to_owned(), true)])
        );
        assert_eq!(c.room_online("live://1"), 2);
        assert_eq!(c.room_online("live://2"), 0);
    }

    #[test]
    fn unfiltered_pushes_skip_accepts() {
        let c = hub(Config::default());
        let a = session(&c, 1, "a", &[]);
        let b = session(&c, 2, "b", &[2000]);
        c.push_msg(PushMsgReq {
            keys: vec!["a".into(), "b".into()],
            proto_op: 5,
            proto: raw(5, b"filtered"),
            ..Default::default()
        })
        .unwrap();
        assert!(a.take_queue().unwrap().is_empty());
        assert!(b.take_queue().unwrap().is_empty());
        c.push_msg(PushMsgReq {
            keys: vec!["a".into(), "b".into()],
            proto_op: 5,
            proto: raw(5, b"v1"),
            unfiltered: true,
            ..Default::default()
        })
        .unwrap();
        assert_eq!(a.take_queue().unwrap().len(), 1);
        assert_eq!(b.take_queue().unwrap().len(), 1);
        c.broadcast(BroadcastReq {
            proto_op: 5,
            proto: raw(5, b"v1-all"),
            unfiltered: true,
            ..Default::default()
        })
        .unwrap();
        assert_eq!(&a.take_queue().unwrap()[0].tcp[16..], b"v1-all");
        assert_eq!(&b.take_queue().unwrap()[0].tcp[16..], b"v1-all");
    }

    /// Many sessions joining, leaving, changing rooms, reconnecting with
    /// their key (kicking the older connection) and disconnecting, checked
    /// after every step against a model of who is in which room; at the end
    /// no room is left in any bucket.
    #[test]
    fn room_maps_follow_every_change_and_end_empty() {
        const ROOMS: [&str; 6] = ["r0", "r1", "r2", "r3", "r4", "r5"];
        let c = hub(Config {
            buckets: 4,
            max_rooms: 3,
            ..Config::default()
        });
        // xorshift64: a fixed, dependency-free sequence.
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = |n: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % n as u64) as usize
        };
        // Live sessions by key, and the rooms each is in (model).
        let mut live: HashMap<String, (Arc<Session>, HashSet<&str>)> = HashMap::new();
        let mut next_id = 1;
        for step in 0..5000 {
            let key = format!("k{}", next(12));
            let room = ROOMS[next(ROOMS.len())];
            match (next(8), live.get_mut(&key)) {
                (0 | 1, _) => {
                    // (Re)connect: a live session of the key is kicked.
                    let s = Arc::new(Session::new(
                        next_id,
                        key.as_str().into(),
                        1,
                        IpAddr::V4(Ipv4Addr::LOCALHOST),
                        &[],
                    ));
                    next_id += 1;
                    let primary = (next(2) == 0).then_some(room);
                    c.register(&s, primary);
                    if let Some((old, _)) = live.remove(&key) {
                        assert_eq!(old.closed(), Some(Closed::Kicked));
                        // The kicked connection's late requests change nothing.
                        assert_eq!(c.join_room(&old, room), Ok(()));
                        assert!(!c.unregister(&old));
                    }
                    live.insert(key, (s, primary.into_iter().collect()));
                }
                (2, Some(_)) => {
                    let (s, _) = live.remove(&key).unwrap();
                    assert!(c.unregister(&s));
                }
                (3 | 4, Some((s, rooms))) => {
                    let expected = if rooms.contains(room) {
                        Err(RoomRefusal::AlreadyIn)
                    } else if s.rooms().others().len() >= 3 {
                        Err(RoomRefusal::Full(3))
                    } else {
                        rooms.insert(room);
                        Ok(())
                    };
                    assert_eq!(c.join_room(s, room), expected, "step {step}");
                }
                (5 | 6, Some((s, rooms))) => {
                    let expected = if rooms.remove(room) {
                        Ok(())
                    } else {
                        Err(RoomRefusal::NotIn)
                    };
                    assert_eq!(c.leave_room(s, room), expected, "step {step}");
                }
                (7, Some((s, rooms))) => {
                    let target = (next(3) != 0).then_some(room);
                    if let Some(old) = s.room() {
                        if target != Some(&*old) {
                            rooms.remove(&*old);
                        }
                    }
                    rooms.extend(target);
                    c.change_room(s, target);
                }
                _ => {}
            }
            let mut expected: HashMap<String, i32> = HashMap::new();
            for (s, rooms) in live.values() {
                assert_eq!(
                    s.rooms().iter().map(|r| &**r).collect::<HashSet<_>>(),
                    *rooms,
                    "step {step}"
                );
                for room in rooms {
                    *expected.entry(room.to_string()).or_default() += 1;
                }
            }
            assert_eq!(c.room_counts(), expected, "step {step}");
        }
        for (s, _) in live.into_values() {
            assert!(c.unregister(&s));
        }
        assert!(c.room_counts().is_empty());
        assert_eq!(c.stats(), Stats::default());
        for bucket in c.buckets.iter() {
            let (mut ips, mut rooms) = (HashSet::new(), HashSet::new());
            bucket.collect(&mut ips, &mut rooms);
            assert!(ips.is_empty() && rooms.is_empty());
        }
    }

    #[tokio::test(start_paused = true)]
    async fn paced_broadcast_pauses_fractionally_per_bucket() {
        let c = hub(Config {
            buckets: 2,
            ..Config::default()
        });
        // Find two keys in different buckets.
        let keys: Vec<String> = {
            let mut by_bucket: [Option<String>; 2] = [None, None];
            for i in 0.. {
                let key = format!("k{i}");
                let index = c.bucket_index(&key);
                by_bucket[index].get_or_insert(key);
                if by_bucket.iter().all(Option::is_some) {
                    break;
                }
            }
            by_bucket.into_iter().flatten().collect()
        };
        let first = session(&c, 1, &keys[0], &[1000]);
        let second = session(&c, 2, &keys[1], &[1000]);
        let started = Instant::now();
        // 1 session per bucket at speed 4: 250ms after each bucket.
        c.broadcast(BroadcastReq {
            proto_op: 1000,
            proto: raw(1000, b"x"),
            speed: 4,
            unfiltered: false,
        })
        .unwrap();
        tokio::task::yield_now().await;
        assert_eq!(first.take_queue().unwrap().len(), 1);
        assert!(second.take_queue().unwrap().is_empty());
        c.tracker.close();
        c.tracker.wait().await;
        assert_eq!(second.take_queue().unwrap().len(), 1);
        assert_eq!(started.elapsed(), Duration::from_millis(500));
    }
}
