// goim framing: encoder and decoder against the byte vectors of
// docs/protocol.md ("Durable messaging vectors") and malformed input.
import assert from "node:assert/strict";
import { test } from "node:test";
import { decodeFrames, decodeMessage, encodeFrame, FrameError, Op } from "../../dist/index.js";

const hex = (s) => Uint8Array.from(s.split(/\s+/).filter(Boolean), (b) => parseInt(b, 16));
const text = (bytes) => new TextDecoder().decode(bytes);

test("encodes the documented vectors byte for byte", () => {
  assert.deepEqual(
    encodeFrame(1000, 1, "hi"),
    hex("00 00 00 12 00 10 00 01 00 00 03 e8 00 00 00 01 68 69"),
  );
  assert.deepEqual(
    encodeFrame(Op.Sync, 1, '{"seq":0}'),
    hex("00 00 00 19 00 10 00 01 00 00 00 12 00 00 00 01 7b 22 73 65 71 22 3a 30 7d"),
  );
  assert.deepEqual(
    encodeFrame(Op.Ack, 0, JSON.stringify({ seq: 1 })),
    hex("00 00 00 19 00 10 00 01 00 00 00 15 00 00 00 00 7b 22 73 65 71 22 3a 31 7d"),
  );
  // A heartbeat: header only; ver is the caller's.
  assert.deepEqual(encodeFrame(Op.Heartbeat, 7, undefined, 0), hex("00 00 00 10 00 10 00 00 00 00 00 02 00 00 00 07"));
});

test("encodes bodies as UTF-8 and negative seqs as int32", () => {
  const frame = decodeFrames(encodeFrame(1001, -5, "héllo"))[0];
  assert.equal(frame.op, 1001);
  assert.equal(frame.seq, -5);
  assert.equal(frame.ver, 1);
  assert.equal(text(frame.body), "héllo");
  assert.equal(frame.body.length, 6);
});

test("decodes the documented WebSocket message: op 9 around a stored frame", () => {
  const message = hex(
    "00 00 00 22 00 10 00 01 00 00 00 09 00 00 00 00 " + "00 00 00 12 00 10 00 01 00 00 03 e8 00 00 00 01 68 69",
  );
  const frames = decodeMessage(message);
  assert.equal(frames.length, 1);
  assert.deepEqual({ ...frames[0], body: text(frames[0].body) }, { ver: 1, op: 1000, seq: 1, body: "hi" });
  // decodeFrames alone leaves the op 9 wrapper as it is.
  assert.equal(decodeFrames(message)[0].op, Op.Raw);
});

test("decodes several frames back to back, inside and beside op 9", () => {
  const inner = [encodeFrame(1000, 0, "m0"), encodeFrame(1000, 0, "m1"), encodeFrame(1000, 0, "m2")];
  const batch = new Uint8Array(inner.reduce((n, f) => n + f.length, 0));
  let at = 0;
  for (const f of inner) {
    batch.set(f, at);
    at += f.length;
  }
  assert.equal(batch.length, 54); // goim's captured room batch is 54 bytes
  const raw = encodeFrame(Op.Raw, 0, batch);
  const reply = encodeFrame(Op.SyncEnd, 3, '{"last":2,"more":false}');
  const message = new Uint8Array(raw.length + reply.length);
  message.set(raw);
  message.set(reply, raw.length);
  const frames = decodeMessage(message);
  assert.deepEqual(
    frames.map((f) => [f.op, f.seq, text(f.body)]),
    [
      [1000, 0, "m0"],
      [1000, 0, "m1"],
      [1000, 0, "m2"],
      [Op.SyncEnd, 3, '{"last":2,"more":false}'],
    ],
  );
});

test("decodes from a view into a larger buffer", () => {
  const frame = encodeFrame(1000, 9, "xyz");
  const big = new Uint8Array(frame.length + 10);
  big.set(frame, 5);
  const [decoded] = decodeFrames(big.subarray(5, 5 + frame.length));
  assert.equal(decoded.seq, 9);
  assert.equal(text(decoded.body), "xyz");
});

test("refuses malformed frames with a reason", () => {
  const good = encodeFrame(1000, 1, "hi");
  const cases = [
    ["truncated header", good.subarray(0, 10), /truncated header/],
    ["truncated body", good.subarray(0, 17), /truncated frame/],
    ["headerLen 15", hex("00 00 00 10 00 0f 00 01 00 00 00 08 00 00 00 01"), /headerLen 15/],
    ["packLen below 16", hex("00 00 00 0f 00 10 00 01 00 00 00 08 00 00 00 01"), /packLen 15/],
    ["op 9 holding a truncated frame", encodeFrame(Op.Raw, 0, good.subarray(0, 12)), /truncated header/],
  ];
  for (const [name, bytes, reason] of cases) {
    assert.throws(() => decodeMessage(bytes), (err) => err instanceof FrameError && reason.test(err.message), name);
  }
  assert.deepEqual(decodeFrames(new Uint8Array(0)), []);
});

test("op codes are the protocol's", () => {
  assert.deepEqual(
    [Op.Heartbeat, Op.HeartbeatReply, Op.SendMsg, Op.SendMsgReply, Op.Auth, Op.AuthReply, Op.Raw],
    [2, 3, 4, 5, 7, 8, 9],
  );
  assert.deepEqual([Op.ChangeRoom, Op.Sub, Op.Unsub, Op.Sync, Op.SyncBegin, Op.SyncEnd], [12, 14, 16, 18, 19, 20]);
  assert.deepEqual([Op.Ack, Op.Read, Op.Notify, Op.JoinRoom, Op.JoinRoomReply, Op.LeaveRoom, Op.LeaveRoomReply], [21, 22, 23, 24, 25, 26, 27]);
});
