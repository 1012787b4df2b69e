//! Golden protobuf bytes: rim's generated messages must encode exactly as
//! goim v2's do, field numbers and wire types included.
//!
//! The expected bytes are derived by hand from the field numbers and types of
//! goim v2's `.proto` files (`goim.protocol.Proto`, the `goim.comet` push
//! requests, `goim.logic.PushMsg`, the `goim.logic` requests and replies),
//! quoted in each test, and from bytes captured from a running goim
//! (docs/protocol.md, "Test vectors"); NOT from rim's `.proto` files: a field
//! renumbered or retyped there fails here.
//!
//! A tag byte is `(field number << 3) | wire type`, wire types being
//! 0 = varint, 2 = length-delimited (string, bytes, message, packed, map
//! entry), 5 = 32-bit (float). Fields are written in field-number order, as
//! Go's protobuf marshaller does; proto3 fields at their default value are
//! omitted. Varints are 7 bits per byte, least significant group first, high
//! bit set on every byte but the last.

use bytes::Bytes;
use prost::Message;
use rim_proto::pb::comet::{BroadcastReq, BroadcastRoomReq, PushMsgReq, RoomsReply};
use rim_proto::pb::logic::{
    push_msg, Backoff, ConnectReply, ConnectReq, DisconnectReply, DisconnectReq, HeartbeatReq,
    NodesReply, NodesReq, OnlineReply, OnlineReq, PushMsg, ReceiveReq,
};
use rim_proto::pb::protocol::Proto;
use rim_proto::{encode_raw_push, Frame, MAX_BODY_DEFAULT};

/// Expected bytes, written as hex tokens (one field per call, with the
/// derivation in a comment) and the ASCII payloads of length-delimited fields.
#[derive(Default)]
struct Expect(Vec<u8>);

impl Expect {
    fn new() -> Expect {
        Expect::default()
    }

    /// Whitespace-separated hex bytes.
    fn hex(mut self, hex: &str) -> Expect {
        self.0.extend(parse_hex(hex));
        self
    }

    /// Payload bytes taken verbatim.
    fn raw(mut self, bytes: &[u8]) -> Expect {
        self.0.extend_from_slice(bytes);
        self
    }

    fn bytes(self) -> Vec<u8> {
        self.0
    }
}

fn parse_hex(hex: &str) -> Vec<u8> {
    hex.split_whitespace()
        .map(|b| u8::from_str_radix(b, 16).unwrap_or_else(|_| panic!("bad hex byte {b:?}")))
        .collect()
}

fn to_hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Asserts that `msg` encodes to exactly `expected`, and that `expected`
/// decodes back to `msg` (what goim sends, rim reads the same way).
fn assert_golden<M: Message + Default + PartialEq + std::fmt::Debug>(msg: &M, expected: &[u8]) {
    let encoded = msg.encode_to_vec();
    assert_eq!(
        to_hex(&encoded),
        to_hex(expected),
        "encoding of {msg:?} diverges from goim"
    );
    let decoded = M::decode(expected).expect("goim's bytes decode");
    assert_eq!(&decoded, msg, "goim's bytes decode to something else");
}

/// The inner frame goim's job builds for a keyed push of "hi", operation
/// 1000: {ver 1, op 1000, seq 0, "hi"}, 18 bytes.
const INNER_HI: &str = "00 00 00 12 00 10 00 01 00 00 03 E8 00 00 00 00 68 69";

/// Captured from goim: a client's 114-byte TCP auth frame (op 7).
const CAPTURED_AUTH_FRAME: &str = "
    00 00 00 72 00 10 00 01 00 00 00 07 00 00 00 01
    7b 22 6d 69 64 22 3a 31 30 30 31 2c 22 6b 65 79
    22 3a 22 74 63 70 2d 6b 65 79 2d 31 22 2c 22 72
    6f 6f 6d 5f 69 64 22 3a 22 6c 69 76 65 3a 2f 2f
    31 30 30 30 22 2c 22 70 6c 61 74 66 6f 72 6d 22
    3a 22 77 65 62 22 2c 22 61 63 63 65 70 74 73 22
    3a 5b 31 30 30 30 2c 31 30 30 31 2c 31 30 30 32
    5d 7d";

/// Captured from goim: the 27 bytes its comet wrote to a TCP client for
/// `push/keys?operation=1000&keys=tcp-key-1`, body `push-to-key` — the inner
/// frame goim's job put in the op 9 proto's body.
const CAPTURED_INNER_PUSH: &str = "
    00 00 00 1b 00 10 00 01 00 00 03 e8 00 00 00 00
    70 75 73 68 2d 74 6f 2d 6b 65 79";

#[test]
fn protocol_proto_field_numbers() {
    // goim.protocol.Proto{ver=1 int32, op=2 int32, seq=3 int32, body=4 bytes}
    let msg = Proto {
        ver: 1,
        op: 1000,
        seq: 7,
        body: Bytes::from_static(b"hi"),
    };
    let expected = Expect::new()
        .hex("08 01") // ver: field 1 varint -> (1<<3)|0 = 0x08; 1
        .hex("10 E8 07") // op: field 2 varint -> 0x10; 1000 = 0x3E8 -> E8 07
        .hex("18 07") // seq: field 3 varint -> 0x18; 7
        .hex("22 02 68 69") // body: field 4 len-delimited -> (4<<3)|2 = 0x22; len 2, "hi"
        .bytes();
    assert_golden(&msg, &expected);

    // Negative int32 is a 10-byte varint (sign-extended), as in Go.
    let negative = Proto {
        ver: -1,
        ..Proto::default()
    };
    let expected = Expect::new()
        .hex("08 FF FF FF FF FF FF FF FF FF 01") // ver: field 1 varint; -1 as 64-bit two's complement
        .bytes();
    assert_golden(&negative, &expected);
}

#[test]
fn logic_push_msg_all_fields() {
    // goim's PushMsg: type=1 enum, operation=2, speed=3, server=4, room=5,
    // keys=6 repeated string, msg=7 bytes.
    assert_eq!(push_msg::Type::Push as i32, 0);
    assert_eq!(push_msg::Type::Room as i32, 1);
    assert_eq!(push_msg::Type::Broadcast as i32, 2);
    let msg = PushMsg {
        r#type: push_msg::Type::Broadcast as i32,
        operation: 1000,
        speed: 100,
        server: "c1".into(),
        room: "live://1".into(),
        keys: vec!["k1".into(), "k2".into()],
        msg: Bytes::from_static(b"hi"),
        ..PushMsg::default()
    };
    let expected = Expect::new()
        .hex("08 02") // type: field 1 varint -> 0x08; BROADCAST = 2
        .hex("10 E8 07") // operation: field 2 varint -> 0x10; 1000 -> E8 07
        .hex("18 64") // speed: field 3 varint -> 0x18; 100 = 0x64
        .hex("22 02 63 31") // server: field 4 len-delimited -> (4<<3)|2 = 0x22; "c1"
        .hex("2A 08") // room: field 5 len-delimited -> (5<<3)|2 = 0x2A; len 8
        .raw(b"live://1")
        .hex("32 02 6B 31") // keys[0]: field 6 len-delimited -> (6<<3)|2 = 0x32; "k1"
        .hex("32 02 6B 32") // keys[1]: field 6 again (repeated string, never packed); "k2"
        .hex("3A 02 68 69") // msg: field 7 len-delimited -> (7<<3)|2 = 0x3A; "hi"
        .bytes();
    assert_golden(&msg, &expected);
}

#[test]
fn logic_push_msg_as_logic_publishes_a_keyed_push() {
    // The Kafka value logic writes for `push/keys?operation=1000&keys=tcp-key-1`
    // (the captured keyed push), type PUSH = 0 omitted as the proto3 default.
    let msg = PushMsg {
        r#type: push_msg::Type::Push as i32,
        operation: 1000,
        server: "comet-1".into(),
        keys: vec!["tcp-key-1".into()],
        msg: Bytes::from_static(b"push-to-key"),
        ..PushMsg::default()
    };
    let expected = Expect::new()
        .hex("10 E8 07") // operation: field 2 varint; 1000
        .hex("22 07") // server: field 4 len-delimited; len 7
        .raw(b"comet-1")
        .hex("32 09") // keys[0]: field 6 len-delimited; len 9
        .raw(b"tcp-key-1")
        .hex("3A 0B") // msg: field 7 len-delimited; len 11
        .raw(b"push-to-key")
        .bytes();
    assert_golden(&msg, &expected);
}

#[test]
fn comet_push_msg_req_with_captured_inner_frame() {
    // goim's PushMsgReq{keys=1 repeated string, proto=2 Proto, protoOp=3 int32}.
    let inner = parse_hex(CAPTURED_INNER_PUSH);
    // rim's job-side encoding of the inner frame is goim's (captured) one.
    assert_eq!(&encode_raw_push(1000, b"push-to-key")[..], &inner[..]);
    let msg = PushMsgReq {
        keys: vec!["tcp-key-1".into(), "k2".into()],
        proto: Some(Proto {
            ver: 1,
            op: 9,
            seq: 0,
            body: Bytes::from(inner.clone()),
        }),
        proto_op: 1000,
        ..PushMsgReq::default()
    };
    let expected = Expect::new()
        .hex("0A 09") // keys[0]: field 1 len-delimited -> (1<<3)|2 = 0x0A; len 9
        .raw(b"tcp-key-1")
        .hex("0A 02 6B 32") // keys[1]: field 1 again; "k2"
        // proto: field 2 len-delimited -> (2<<3)|2 = 0x12; len 2+2+2+27 = 33 = 0x21
        .hex("12 21")
        .hex("08 01") //   Proto.ver: field 1 varint; 1
        .hex("10 09") //   Proto.op: field 2 varint; 9 (OpRaw); seq 0 omitted
        .hex("22 1B") //   Proto.body: field 4 len-delimited; len 27
        .raw(&inner)
        .hex("18 E8 07") // protoOp: field 3 varint -> 0x18; 1000
        .bytes();
    assert_golden(&msg, &expected);
}

#[test]
fn comet_broadcast_req() {
    // goim's BroadcastReq{protoOp=1, proto=2, speed=3}.
    let msg = BroadcastReq {
        proto_op: 1000,
        proto: Some(Proto {
            ver: 1,
            op: 9,
            seq: 0,
            body: Bytes::from(parse_hex(INNER_HI)),
        }),
        speed: 100,
        ..BroadcastReq::default()
    };
    let expected = Expect::new()
        .hex("08 E8 07") // protoOp: field 1 varint -> 0x08; 1000
        .hex("12 18") // proto: field 2 len-delimited -> 0x12; len 2+2+2+18 = 24 = 0x18
        .hex("08 01 10 09") //   Proto.ver = 1 (0x08), Proto.op = 9 (0x10)
        .hex("22 12") //   Proto.body: field 4 len-delimited; len 18
        .hex(INNER_HI)
        .hex("18 64") // speed: field 3 varint -> 0x18; 100
        .bytes();
    assert_golden(&msg, &expected);
}

#[test]
fn comet_broadcast_room_req() {
    // goim's BroadcastRoomReq{roomID=1 string, proto=2}.
    let msg = BroadcastRoomReq {
        room_id: "live://1000".into(),
        proto: Some(Proto {
            ver: 1,
            op: 9,
            seq: 0,
            body: Bytes::from(parse_hex(INNER_HI)),
        }),
    };
    let expected = Expect::new()
        .hex("0A 0B") // roomID: field 1 len-delimited -> 0x0A; len 11
        .raw(b"live://1000")
        .hex("12 18") // proto: field 2 len-delimited -> 0x12; len 24
        .hex("08 01 10 09 22 12") //   ver 1, op 9, body (field 4) len 18
        .hex(INNER_HI)
        .bytes();
    assert_golden(&msg, &expected);
}

#[test]
fn comet_rooms_reply_map() {
    // goim's RoomsReply{rooms=1 map<string,bool>}; a map entry is a
    // message {key=1, value=2}.
    let msg = RoomsReply {
        rooms: [("live://1000".to_owned(), true)].into(),
    };
    let expected = Expect::new()
        .hex("0A 0F") // rooms: field 1 len-delimited; entry len 2+11+2 = 15
        .hex("0A 0B") //   key: field 1 len-delimited; len 11
        .raw(b"live://1000")
        .hex("10 01") //   value: field 2 varint -> 0x10; true
        .bytes();
    assert_golden(&msg, &expected);
}

#[test]
fn logic_connect_req_with_captured_token() {
    // goim's ConnectReq{server=1 string, cookie=2 string, token=3 bytes};
    // the token is the body of the captured op 7 frame, verbatim.
    let frame = Frame::decode_exact(
        Bytes::from(parse_hex(CAPTURED_AUTH_FRAME)),
        MAX_BODY_DEFAULT,
    )
    .expect("captured auth frame decodes");
    assert_eq!((frame.op, frame.body.len()), (7, 98));
    let msg = ConnectReq {
        server: "comet-1".into(),
        cookie: "a=b".into(),
        token: frame.body.clone(),
    };
    let expected = Expect::new()
        .hex("0A 07") // server: field 1 len-delimited -> 0x0A; len 7
        .raw(b"comet-1")
        .hex("12 03") // cookie: field 2 len-delimited -> 0x12; len 3
        .raw(b"a=b")
        .hex("1A 62") // token: field 3 len-delimited -> (3<<3)|2 = 0x1A; len 98 = 0x62
        .raw(&frame.body)
        .bytes();
    assert_golden(&msg, &expected);
}

#[test]
fn logic_connect_reply_heartbeat_in_nanoseconds() {
    // goim's ConnectReply{mid=1 int64, key=2, roomID=3,
    // accepts=4 repeated int32 (packed), heartbeat=5 int64 ns}; 8 min default.
    let msg = ConnectReply {
        mid: 1001,
        key: "tcp-key-1".into(),
        room_id: "live://1000".into(),
        accepts: vec![1000, 1001, 1002],
        heartbeat: 480_000_000_000,
        ..ConnectReply::default()
    };
    let expected = Expect::new()
        .hex("08 E9 07") // mid: field 1 varint -> 0x08; 1001 = 0x3E9 -> E9 07
        .hex("12 09") // key: field 2 len-delimited -> 0x12; len 9
        .raw(b"tcp-key-1")
        .hex("1A 0B") // roomID: field 3 len-delimited -> 0x1A; len 11
        .raw(b"live://1000")
        // accepts: field 4 packed (len-delimited) -> (4<<3)|2 = 0x22; len 6
        .hex("22 06 E8 07 E9 07 EA 07") // 1000, 1001, 1002
        // heartbeat: field 5 varint -> (5<<3)|0 = 0x28; 480_000_000_000 ns
        // = 0x6F_C23A_C000, 7-bit groups LSB first 00 00 6B 11 7C 0D
        .hex("28 80 80 EB 91 FC 0D")
        .bytes();
    assert_golden(&msg, &expected);
    // 8 minutes, as goim's node.heartbeat (4m) x heartbeatMax (2).
    assert_eq!(
        u128::try_from(msg.heartbeat).unwrap(),
        std::time::Duration::from_secs(8 * 60).as_nanos()
    );
}

#[test]
fn logic_heartbeat_and_disconnect_req() {
    // goim's HeartbeatReq and DisconnectReq{mid=1, key=2, server=3}.
    let expected = Expect::new()
        .hex("08 E9 07") // mid: field 1 varint; 1001
        .hex("12 09") // key: field 2 len-delimited; len 9
        .raw(b"tcp-key-1")
        .hex("1A 07") // server: field 3 len-delimited -> 0x1A; len 7
        .raw(b"comet-1")
        .bytes();
    let heartbeat = HeartbeatReq {
        mid: 1001,
        key: "tcp-key-1".into(),
        server: "comet-1".into(),
    };
    assert_golden(&heartbeat, &expected);
    let disconnect = DisconnectReq {
        mid: 1001,
        key: "tcp-key-1".into(),
        server: "comet-1".into(),
    };
    assert_golden(&disconnect, &expected);
    // DisconnectReply{has=1 bool}
    assert_golden(
        &DisconnectReply { has: true },
        &Expect::new().hex("08 01").bytes(), // has: field 1 varint; true
    );
}

#[test]
fn logic_online_req_and_reply() {
    // goim's OnlineReq{server=1, roomCount=2 map<string,int32>},
    // OnlineReply{allRoomCount=1 map<string,int32>}. One entry per map: a
    // map's entry order is unspecified.
    let req = OnlineReq {
        server: "comet-1".into(),
        room_count: [("live://1000".to_owned(), 5)].into(),
        ..OnlineReq::default()
    };
    let entry = Expect::new()
        .hex("0A 0B") // entry key: field 1 len-delimited; len 11
        .raw(b"live://1000")
        .hex("10 05") // entry value: field 2 varint; 5
        .bytes();
    let expected = Expect::new()
        .hex("0A 07") // server: field 1 len-delimited; len 7
        .raw(b"comet-1")
        .hex("12 0F") // roomCount: field 2 len-delimited -> 0x12; entry len 15
        .raw(&entry)
        .bytes();
    assert_golden(&req, &expected);

    let reply = OnlineReply {
        all_room_count: [("live://1000".to_owned(), 5)].into(),
        ..OnlineReply::default()
    };
    let expected = Expect::new()
        .hex("0A 0F") // allRoomCount: field 1 len-delimited -> 0x0A; entry len 15
        .raw(&entry)
        .bytes();
    assert_golden(&reply, &expected);

    // rim's room_ttl_ms after goim's part, at a number goim's comet skips.
    let refreshed = OnlineReply {
        room_ttl_ms: 300_000,
        ..reply.clone()
    };
    let expected = Expect::new()
        .raw(&expected)
        // room_ttl_ms: field 100 varint -> A0 06; 300000 = 0x493E0 -> E0 A7 12
        .hex("A0 06 E0 A7 12")
        .bytes();
    assert_golden(&refreshed, &expected);
}

#[test]
fn room_announce_req_and_reply() {
    // rim.room.Rooms/Announce: AnnounceReq{server=1, rooms=2 repeated},
    // AnnounceReply{ttl_ms=1}.
    let req = rim_proto::pb::room::AnnounceReq {
        server: "c1".into(),
        rooms: vec!["live://1".into(), "a".into()],
    };
    let expected = Expect::new()
        .hex("0A 02") // server: field 1 len-delimited; len 2
        .raw(b"c1")
        .hex("12 08") // rooms: field 2 len-delimited; len 8
        .raw(b"live://1")
        .hex("12 01") // rooms: the second one
        .raw(b"a")
        .bytes();
    assert_golden(&req, &expected);
    let reply = rim_proto::pb::room::AnnounceReply { ttl_ms: 300_000 };
    let expected = Expect::new()
        .hex("08 E0 A7 12") // ttl_ms: field 1 varint; 300000
        .bytes();
    assert_golden(&reply, &expected);
    assert_eq!(
        rim_proto::pb::room::rooms_server::SERVICE_NAME,
        "rim.room.Rooms"
    );
}

#[test]
fn logic_online_req_rim_extensions_stay_out_of_goims_numbers() {
    // rim's additions to OnlineReq (not in goim) must use numbers goim's
    // logic skips as unknown: the goim part of the encoding is unchanged and
    // the extension comes after it with a tag >= 100.
    let base = OnlineReq {
        server: "comet-1".into(),
        ..OnlineReq::default()
    };
    let extended = OnlineReq {
        conn_count: 4,
        ..base.clone()
    };
    let expected = Expect::new()
        .raw(&base.encode_to_vec())
        // conn_count: field 100 varint -> 100<<3 = 800 = 0x320 -> A0 06; value 4
        .hex("A0 06 04")
        .bytes();
    assert_golden(&extended, &expected);

    let signing_off = OnlineReq {
        offline: true,
        ..base.clone()
    };
    let expected = Expect::new()
        .raw(&base.encode_to_vec())
        // offline: field 105 varint -> 105<<3 = 840 = 0x348 -> C8 06; true
        .hex("C8 06 01")
        .bytes();
    assert_golden(&signing_off, &expected);
}

#[test]
fn unfiltered_pushes_use_rim_numbers_after_goims() {
    // goim v1's API pushes past accepts; the bit travels in rim fields that
    // goim's job and comet skip: PushMsg 108, PushMsgReq 103, BroadcastReq 100.
    let base = PushMsg {
        operation: 5,
        server: "c1".into(),
        keys: vec!["k1".into()],
        msg: Bytes::from_static(b"hi"),
        ..PushMsg::default()
    };
    let expected = Expect::new()
        .raw(&base.encode_to_vec())
        // unfiltered: field 108 varint -> 108<<3 = 864 = 0x360 -> E0 06; true
        .hex("E0 06 01")
        .bytes();
    assert_golden(
        &PushMsg {
            unfiltered: true,
            ..base
        },
        &expected,
    );

    let base = PushMsgReq {
        keys: vec!["k1".into()],
        proto_op: 5,
        ..PushMsgReq::default()
    };
    let expected = Expect::new()
        .raw(&base.encode_to_vec())
        // unfiltered: field 103 varint -> 103<<3 = 824 = 0x338 -> B8 06; true
        .hex("B8 06 01")
        .bytes();
    assert_golden(
        &PushMsgReq {
            unfiltered: true,
            ..base
        },
        &expected,
    );

    let base = BroadcastReq {
        proto_op: 5,
        ..BroadcastReq::default()
    };
    let expected = Expect::new()
        .raw(&base.encode_to_vec())
        // unfiltered: field 100 varint -> 100<<3 = 800 = 0x320 -> A0 06; true
        .hex("A0 06 01")
        .bytes();
    assert_golden(
        &BroadcastReq {
            unfiltered: true,
            ..base
        },
        &expected,
    );
}

#[test]
fn logic_receive_req() {
    // goim's ReceiveReq{mid=1, proto=2}; the proto is the captured upstream
    // op 4 frame ("hello-up", seq 7).
    let msg = ReceiveReq {
        mid: 1001,
        proto: Some(Proto {
            ver: 1,
            op: 4,
            seq: 7,
            body: Bytes::from_static(b"hello-up"),
        }),
    };
    let expected = Expect::new()
        .hex("08 E9 07") // mid: field 1 varint; 1001
        .hex("12 10") // proto: field 2 len-delimited; len 2+2+2+10 = 16
        .hex("08 01 10 04 18 07") //   ver 1, op 4, seq 7 (field 3 varint -> 0x18)
        .hex("22 08") //   body: field 4 len-delimited; len 8
        .raw(b"hello-up")
        .bytes();
    assert_golden(&msg, &expected);
}

#[test]
fn logic_nodes_req_and_reply() {
    // goim's NodesReq{platform=1, clientIP=2}.
    let req = NodesReq {
        platform: "web".into(),
        client_ip: "127.0.0.1".into(),
    };
    let expected = Expect::new()
        .hex("0A 03") // platform: field 1 len-delimited; len 3
        .raw(b"web")
        .hex("12 09") // clientIP: field 2 len-delimited; len 9
        .raw(b"127.0.0.1")
        .bytes();
    assert_golden(&req, &expected);

    // goim's NodesReply{domain=1, tcp_port=2, ws_port=3, wss_port=4,
    // heartbeat=5 (seconds), nodes=6, backoff=7, heartbeat_max=8} and
    // Backoff{max_delay=1 int32, base_delay=2 int32, factor=3 float, jitter=4 float}.
    let reply = NodesReply {
        domain: "conn.goim.io".into(),
        tcp_port: 3101,
        ws_port: 3102,
        wss_port: 3103,
        heartbeat: 240,
        nodes: vec!["host01.goim.io".into()],
        backoff: Some(Backoff {
            max_delay: 300,
            base_delay: 3,
            factor: 1.8,
            jitter: 0.3,
        }),
        heartbeat_max: 2,
    };
    let expected = Expect::new()
        .hex("0A 0C") // domain: field 1 len-delimited; len 12
        .raw(b"conn.goim.io")
        .hex("10 9D 18") // tcp_port: field 2 varint -> 0x10; 3101 = 0xC1D -> 9D 18
        .hex("18 9E 18") // ws_port: field 3 varint -> 0x18; 3102 -> 9E 18
        .hex("20 9F 18") // wss_port: field 4 varint -> (4<<3)|0 = 0x20; 3103 -> 9F 18
        .hex("28 F0 01") // heartbeat: field 5 varint -> 0x28; 240 s = 0xF0 -> F0 01
        .hex("32 0E") // nodes[0]: field 6 len-delimited -> 0x32; len 14
        .raw(b"host01.goim.io")
        .hex("3A 0F") // backoff: field 7 len-delimited -> 0x3A; len 3+2+5+5 = 15
        .hex("08 AC 02") //   max_delay: field 1 varint; 300 = 0x12C -> AC 02
        .hex("10 03") //   base_delay: field 2 varint; 3
        .hex("1D 66 66 E6 3F") //   factor: field 3 32-bit -> (3<<3)|5 = 0x1D; 1.8f32 = 0x3FE66666 LE
        .hex("25 9A 99 99 3E") //   jitter: field 4 32-bit -> (4<<3)|5 = 0x25; 0.3f32 = 0x3E99999A LE
        .hex("40 02") // heartbeat_max: field 8 varint -> (8<<3)|0 = 0x40; 2
        .bytes();
    assert_golden(&reply, &expected);
}

#[test]
fn grpc_service_names() {
    // goim's package and service names are part of every gRPC method path
    // (`/goim.comet.Comet/PushMsg`, `/goim.logic.Logic/Connect`), so a goim
    // peer finds rim's services only under exactly these names.
    assert_eq!(
        rim_proto::pb::comet::comet_server::SERVICE_NAME,
        "goim.comet.Comet"
    );
    assert_eq!(
        rim_proto::pb::logic::logic_server::SERVICE_NAME,
        "goim.logic.Logic"
    );
}
