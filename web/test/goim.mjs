// A goim client over TCP for the browser tests' Node side (docs/protocol.md):
// the 16-byte big-endian header (packLen, headerLen 16, ver 1, op, seq),
// op 7 auth with a JSON token, op 2 heartbeats, and every frame it receives
// kept in order (op 9 batches unpacked), so a test can wait for one.
import { connect } from "node:net";

export const OP = {
  HEARTBEAT: 2,
  HEARTBEAT_REPLY: 3,
  SEND: 4,
  SEND_REPLY: 5,
  AUTH: 7,
  AUTH_REPLY: 8,
  RAW: 9,
};

const HEADER = 16;

/** One frame: `{ op, seq, body: Buffer }`. */
export function encode(op, seq, body = Buffer.alloc(0)) {
  const frame = Buffer.alloc(HEADER + body.length);
  frame.writeUInt32BE(HEADER + body.length, 0);
  frame.writeUInt16BE(HEADER, 4);
  frame.writeUInt16BE(1, 6);
  frame.writeUInt32BE(op, 8);
  frame.writeUInt32BE(seq, 12);
  body.copy(frame, HEADER);
  return frame;
}

/** Splits `buffer` into whole frames; returns them and the rest. */
export function decode(buffer) {
  const frames = [];
  let at = 0;
  while (buffer.length - at >= HEADER) {
    const packLen = buffer.readUInt32BE(at);
    const headerLen = buffer.readUInt16BE(at + 4);
    if (packLen < headerLen || headerLen < HEADER) throw new Error(`bad frame header: packLen ${packLen}, headerLen ${headerLen}`);
    if (buffer.length - at < packLen) break;
    frames.push({
      op: buffer.readUInt32BE(at + 8),
      seq: buffer.readUInt32BE(at + 12),
      body: buffer.subarray(at + headerLen, at + packLen),
    });
    at += packLen;
  }
  return { frames, rest: buffer.subarray(at) };
}

export class GoimClient {
  /** Frames received, in order (op 9 batches as their inner frames). */
  frames = [];
  #socket;
  #buffer = Buffer.alloc(0);
  #waiters = new Set();
  #closed = null;
  #seq = 1;

  /** Connects to `addr` ("host:port") and authenticates with `token` (an object). */
  static async connect(addr, token, { timeoutMs = 10_000 } = {}) {
    const client = new GoimClient();
    const [host, port] = splitAddr(addr);
    await new Promise((resolve, reject) => {
      client.#socket = connect({ host, port }, resolve);
      client.#socket.once("error", reject);
    });
    client.#socket.on("data", (chunk) => client.#receive(chunk));
    client.#socket.on("close", () => {
      client.#closed ??= new Error("connection closed by the server");
      client.#wake();
    });
    client.#socket.on("error", (err) => {
      client.#closed = err;
      client.#wake();
    });
    client.send(OP.AUTH, Buffer.from(JSON.stringify(token)));
    await client.next((f) => f.op === OP.AUTH_REPLY, timeoutMs, "the auth reply (op 8)");
    client.send(OP.HEARTBEAT);
    return client;
  }

  /** Sends a frame; returns its seq. */
  send(op, body = Buffer.alloc(0)) {
    const seq = this.#seq++;
    this.#socket.write(encode(op, seq, typeof body === "string" ? Buffer.from(body) : body));
    return seq;
  }

  /** Sends op 4 (an IM session's message) and waits for its op 5; answers its JSON. */
  async sendMessage(message, timeoutMs = 10_000) {
    const seq = this.send(OP.SEND, Buffer.from(JSON.stringify(message)));
    const reply = await this.next((f) => f.op === OP.SEND_REPLY && f.seq === seq, timeoutMs, `op 5 for seq ${seq}`);
    return JSON.parse(reply.body.toString());
  }

  /**
   * The first frame received (already or later) that `match`es, removed
   * from `frames`; fails after `timeoutMs`, or when the connection closes.
   */
  next(match, timeoutMs = 10_000, what = "a frame") {
    return new Promise((resolve, reject) => {
      const waiter = () => {
        const at = this.frames.findIndex(match);
        if (at >= 0) {
          done();
          resolve(this.frames.splice(at, 1)[0]);
        } else if (this.#closed) {
          done();
          reject(new Error(`waiting for ${what}: ${this.#closed.message}`));
        }
      };
      const timer = setTimeout(() => {
        done();
        const seen = this.frames.map((f) => `op ${f.op} ${f.body.toString().slice(0, 80)}`).join("; ");
        reject(new Error(`no ${what} within ${timeoutMs} ms (received: ${seen || "nothing"})`));
      }, timeoutMs);
      const done = () => {
        clearTimeout(timer);
        this.#waiters.delete(waiter);
      };
      this.#waiters.add(waiter);
      waiter();
    });
  }

  close() {
    this.#closed ??= new Error("closed by the test");
    this.#socket?.destroy();
  }

  #receive(chunk) {
    let decoded;
    try {
      decoded = decode(Buffer.concat([this.#buffer, chunk]));
    } catch (err) {
      this.#closed = err;
      this.#socket.destroy();
      this.#wake();
      return;
    }
    this.#buffer = decoded.rest;
    for (const frame of decoded.frames) {
      if (frame.op === OP.RAW) this.frames.push(...decode(frame.body).frames);
      else this.frames.push(frame);
    }
    this.#wake();
  }

  #wake() {
    for (const waiter of [...this.#waiters]) waiter();
  }
}

function splitAddr(addr) {
  const at = addr.lastIndexOf(":");
  return [addr.slice(0, at).replace(/^\[|\]$/g, ""), Number(addr.slice(at + 1))];
}
