/**
 * goim framing: the 16-byte big-endian header, op codes, and the op 9
 * batches a WebSocket message may hold. Pure functions, no I/O.
 *
 * | offset | size | field                          |
 * |-------:|-----:|--------------------------------|
 * | 0      | 4    | packLen (16 + body length)     |
 * | 4      | 2    | headerLen (always 16)          |
 * | 6      | 2    | ver                            |
 * | 8      | 4    | op                             |
 * | 12     | 4    | seq                            |
 * | 16     | n    | body                           |
 */

/** Header length of every goim frame. */
export const HEADER_LEN = 16;

/** The operation codes of rim's client protocol (docs/protocol.md). */
export const Op = {
  Heartbeat: 2,
  HeartbeatReply: 3,
  SendMsg: 4,
  SendMsgReply: 5,
  Auth: 7,
  AuthReply: 8,
  Raw: 9,
  ChangeRoom: 12,
  ChangeRoomReply: 13,
  Sub: 14,
  SubReply: 15,
  Unsub: 16,
  UnsubReply: 17,
  Sync: 18,
  SyncBegin: 19,
  SyncEnd: 20,
  Ack: 21,
  Read: 22,
  Notify: 23,
  JoinRoom: 24,
  JoinRoomReply: 25,
  LeaveRoom: 26,
  LeaveRoomReply: 27,
} as const;

/** One goim frame. */
export interface Frame {
  ver: number;
  op: number;
  seq: number;
  body: Uint8Array;
}

/** A frame that does not parse: the connection cannot be trusted any more. */
export class FrameError extends Error {
  override name = "FrameError";
}

const encoder = new TextEncoder();

/** Encodes one frame; a string body is sent as UTF-8. */
export function encodeFrame(op: number, seq: number, body: Uint8Array | string = new Uint8Array(0), ver = 1): Uint8Array {
  const bytes = typeof body === "string" ? encoder.encode(body) : body;
  const out = new Uint8Array(HEADER_LEN + bytes.length);
  const view = new DataView(out.buffer);
  view.setUint32(0, out.length);
  view.setUint16(4, HEADER_LEN);
  view.setUint16(6, ver);
  view.setInt32(8, op);
  view.setInt32(12, seq);
  out.set(bytes, HEADER_LEN);
  return out;
}

/**
 * Decodes every frame in `data` (frames back to back, as a TCP stream or a
 * room batch holds them). Throws FrameError on a truncated or malformed frame.
 */
export function decodeFrames(data: Uint8Array): Frame[] {
  const frames: Frame[] = [];
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  let at = 0;
  while (at < data.length) {
    if (data.length - at < HEADER_LEN) {
      throw new FrameError(`truncated header: ${data.length - at} bytes left`);
    }
    const packLen = view.getUint32(at);
    const headerLen = view.getUint16(at + 4);
    if (headerLen !== HEADER_LEN) throw new FrameError(`headerLen ${headerLen}, expected ${HEADER_LEN}`);
    if (packLen < HEADER_LEN) throw new FrameError(`packLen ${packLen} below the header length`);
    if (packLen > data.length - at) {
      throw new FrameError(`truncated frame: packLen ${packLen}, ${data.length - at} bytes left`);
    }
    frames.push({
      ver: view.getUint16(at + 6),
      op: view.getInt32(at + 8),
      seq: view.getInt32(at + 12),
      body: data.subarray(at + HEADER_LEN, at + packLen),
    });
    at += packLen;
  }
  return frames;
}

/**
 * Decodes one WebSocket message: its frames, with each op 9 (raw) frame
 * replaced by the frames its body holds, in order.
 */
export function decodeMessage(data: Uint8Array): Frame[] {
  const out: Frame[] = [];
  for (const frame of decodeFrames(data)) {
    if (frame.op === Op.Raw) out.push(...decodeFrames(frame.body));
    else out.push(frame);
  }
  return out;
}
