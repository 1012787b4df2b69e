//! Every Redis key format in one place. The layout is goim v2's, so goim and
//! rim can read each other's sessions. None of goim's keys carries a hash
//! tag, and none needs one on a Redis Cluster: every operation touches a
//! single key (a user's sessions are the one hash `mid_<mid>`). rim's room
//! membership records (`rim_room:{<room>}`) carry the room as their tag.

/// Hash of a user's connections: field = connection key, value = comet.
pub(crate) fn mid(mid: i64) -> String {
    format!("mid_{mid}")
}

/// A connection key's comet.
pub(crate) fn key(key: &str) -> String {
    format!("key_{key}")
}

/// A comet's online report: fields "0".."63" hold goim's JSON room shards,
/// field [`ONLINE_RIM_FIELD`] rim's connection counts and addresses.
pub(crate) fn online(server: &str) -> String {
    format!("ol_{server}")
}

/// Field of `ol_<server>` with rim's additions (goim reads only "0".."63").
pub(crate) const ONLINE_RIM_FIELD: &str = "rim";

/// Sorted set of comets with an online report, scored by report time, so
/// that listing them does not scan the keyspace.
pub(crate) const ONLINE_SERVERS: &str = "rim_online_servers";

/// A room's membership records (rim's; goim has none): a sorted set of the
/// comets holding members, each scored by when its record expires (Unix
/// milliseconds of the Redis server's clock). The room is the hash tag, so
/// whatever a room's record needs stays in one slot.
pub(crate) fn room(room: &str) -> String {
    format!("rim_room:{{{room}}}")
}

/// The `ol_<server>` field that holds `room` (goim: CityHash32(room) mod 64).
pub(crate) fn online_slot(room: &str) -> u32 {
    cityhasher::hash::<u32>(room.as_bytes()) % 64
}

#[cfg(test)]
mod tests {
    #[test]
    fn cityhash32_matches_goim_vectors() {
        // CityHash32 (Google CityHash v1.1) as goim computes it, with the Go
        // port goim uses.
        for (input, expected) in [
            ("", 0xdc56d17a_u32),
            ("a", 0x3c973d4d),
            ("abcd", 0x98b51e95),
            ("hello", 0x79969366),
            ("test_server_key", 0xb2886d6e),
            ("live://1000", 0x431f9d2b),
        ] {
            assert_eq!(
                cityhasher::hash::<u32>(input.as_bytes()),
                expected,
                "{input:?}"
            );
        }
        assert_eq!(super::online_slot("live://1000"), 0x431f9d2b % 64);
    }
}
