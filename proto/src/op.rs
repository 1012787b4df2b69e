//! goim v2 operation codes (`api/protocol/operation.go` numbering), rim's
//! IM ops 18 to 23 (docs/protocol.md, "Durable messaging") and its room ops
//! 24 to 27 (docs/protocol.md, "Rooms").

/// An operation code. Unknown codes (business ops such as 1000) pass through
/// unchanged, because goim forwards them upstream and echoes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// 0: defined by goim, never used by the server.
    Handshake,
    /// 1: defined by goim, never sent.
    HandshakeReply,
    /// 2: client heartbeat.
    Heartbeat,
    /// 3: heartbeat reply; body is the room's online count (int32 BE).
    HeartbeatReply,
    /// 4: upstream message from the client.
    SendMsg,
    /// 5: defined, not sent by goim v2.
    SendMsgReply,
    /// 6: defined, never sent.
    DisconnectReply,
    /// 7: authentication, the first client frame; body is the JSON token.
    Auth,
    /// 8: authentication reply, empty body.
    AuthReply,
    /// 9: body is one or more complete frames (a push or a room batch).
    Raw,
    /// 10: goim-internal sentinel, never on the wire.
    ProtoReady,
    /// 11: goim-internal sentinel, never on the wire.
    ProtoFinish,
    /// 12: change room; body is the new room id (empty: leave the room).
    ChangeRoom,
    /// 13: change-room reply, body echoed.
    ChangeRoomReply,
    /// 14: add ops (comma-separated int32 list) to the accepts set.
    Sub,
    /// 15: sub reply, body echoed.
    SubReply,
    /// 16: remove ops from the accepts set.
    Unsub,
    /// 17: unsub reply, body echoed.
    UnsubReply,
    /// 18, rim: sync (IM sessions): `{"seq", "epoch", "limit"}`.
    Sync,
    /// 19, rim: sync begin: `{"epoch", "from", "first", "top", "complete"}`.
    SyncBegin,
    /// 20, rim: sync end: `{"last", "more"}`, or `{"code", "reason"}`.
    SyncEnd,
    /// 21, rim: cumulative ack of this device: `{"seq"}`.
    Ack,
    /// 22, rim: the user read up to `{"seq"}`.
    Read,
    /// 23, rim: notify (IM sessions): `{"kind": "read", "seq"}`.
    Notify,
    /// 24, rim: join one more room; body is the room id.
    JoinRoom,
    /// 25, rim: join reply: the room id echoed, or `{"code", "reason"}`.
    JoinRoomReply,
    /// 26, rim: leave a room; body is the room id.
    LeaveRoom,
    /// 27, rim: leave reply: the room id echoed, or `{"code", "reason"}`.
    LeaveRoomReply,
    /// Any other code, business ops included.
    Other(i32),
}

impl Op {
    /// The numeric code on the wire.
    pub const fn code(self) -> i32 {
        match self {
            Op::Handshake => 0,
            Op::HandshakeReply => 1,
            Op::Heartbeat => 2,
            Op::HeartbeatReply => 3,
            Op::SendMsg => 4,
            Op::SendMsgReply => 5,
            Op::DisconnectReply => 6,
            Op::Auth => 7,
            Op::AuthReply => 8,
            Op::Raw => 9,
            Op::ProtoReady => 10,
            Op::ProtoFinish => 11,
            Op::ChangeRoom => 12,
            Op::ChangeRoomReply => 13,
            Op::Sub => 14,
            Op::SubReply => 15,
            Op::Unsub => 16,
            Op::UnsubReply => 17,
            Op::Sync => 18,
            Op::SyncBegin => 19,
            Op::SyncEnd => 20,
            Op::Ack => 21,
            Op::Read => 22,
            Op::Notify => 23,
            Op::JoinRoom => 24,
            Op::JoinRoomReply => 25,
            Op::LeaveRoom => 26,
            Op::LeaveRoomReply => 27,
            Op::Other(code) => code,
        }
    }
}

impl From<i32> for Op {
    fn from(code: i32) -> Self {
        match code {
            0 => Op::Handshake,
            1 => Op::HandshakeReply,
            2 => Op::Heartbeat,
            3 => Op::HeartbeatReply,
            4 => Op::SendMsg,
            5 => Op::SendMsgReply,
            6 => Op::DisconnectReply,
            7 => Op::Auth,
            8 => Op::AuthReply,
            9 => Op::Raw,
            10 => Op::ProtoReady,
            11 => Op::ProtoFinish,
            12 => Op::ChangeRoom,
            13 => Op::ChangeRoomReply,
            14 => Op::Sub,
            15 => Op::SubReply,
            16 => Op::Unsub,
            17 => Op::UnsubReply,
            18 => Op::Sync,
            19 => Op::SyncBegin,
            20 => Op::SyncEnd,
            21 => Op::Ack,
            22 => Op::Read,
            23 => Op::Notify,
            24 => Op::JoinRoom,
            25 => Op::JoinRoomReply,
            26 => Op::LeaveRoom,
            27 => Op::LeaveRoomReply,
            other => Op::Other(other),
        }
    }
}

impl From<Op> for i32 {
    fn from(op: Op) -> i32 {
        op.code()
    }
}

#[cfg(test)]
mod tests {
    use super::Op;

    #[test]
    fn every_code_round_trips() {
        for code in -5..2000 {
            assert_eq!(Op::from(code).code(), code);
        }
        assert_eq!(Op::from(7), Op::Auth);
        assert_eq!(Op::from(1000), Op::Other(1000));
        assert_eq!(Op::from(24), Op::JoinRoom);
        assert_eq!(Op::from(27), Op::LeaveRoomReply);
        assert_eq!(Op::from(28), Op::Other(28));
    }
}
