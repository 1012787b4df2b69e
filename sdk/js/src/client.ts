/**
 * The client: one WebSocket connection to a comet at a time, kept up with
 * heartbeats and reconnects, plus IM mode (sync, acks, read marks, sends).
 * Framing lives in frame.ts, delays in backoff.ts, the sync rules in sync.ts.
 */

import { Backoff } from "./backoff.js";
import { decodeMessage, encodeFrame, Op, type Frame } from "./frame.js";
import { SyncState, type SyncBegin, type SyncEnd, type SyncPosition } from "./sync.js";
import type {
  ClientEvents,
  ClientOptions,
  Message,
  Notify,
  OutgoingMessage,
  Provider,
  Push,
  SendResult,
  State,
  StateEvent,
  SyncStorage,
  Token,
  TokenObject,
  WebSocketConstructor,
} from "./types.js";
import { Emitter, jwtUser, memoryStorage, randomHex, RimError } from "./util.js";

const decoder = new TextDecoder();

/** A request answered by op + 1 with the same header seq (ops 12, 14, 16, 24, 26). */
interface Request {
  op: number;
  resolve: () => void;
  reject: (err: RimError) => void;
}

/** A message sent (op 4) and not answered yet; it outlives connections. */
interface PendingSend {
  id: string;
  body: string;
  resolve: (result: SendResult) => void;
  reject: (err: RimError) => void;
}

/** One WebSocket connection and what belongs to it alone. */
interface Connection {
  socket: WebSocket;
  authed: boolean;
  seq: number;
  requests: Map<number, Request>;
  /** header seq of an op 4 → its message id */
  sends: Map<number, string>;
  outbox: Uint8Array<ArrayBuffer>[];
  sentAt: number[];
  timers: Set<ReturnType<typeof setTimeout>>;
  heartbeat?: ReturnType<typeof setInterval>;
  heartbeatDeadline?: ReturnType<typeof setTimeout>;
  flushTimer?: ReturnType<typeof setTimeout>;
}

async function resolve<T>(provider: Provider<T>): Promise<T> {
  return typeof provider === "function" ? await (provider as () => T | Promise<T>)() : provider;
}

function payload<Extra extends object>(op: number, seq: number, body: Uint8Array, extra: Extra): Push & Extra {
  return {
    op,
    seq,
    body,
    text: () => decoder.decode(body),
    json: <T>() => JSON.parse(decoder.decode(body)) as T,
    ...extra,
  };
}

function parseJson<T>(body: Uint8Array): T | null {
  try {
    return JSON.parse(decoder.decode(body)) as T;
  } catch {
    return null;
  }
}

export class RimClient extends Emitter<ClientEvents> {
  private readonly options: ClientOptions;
  private readonly WebSocketImpl: WebSocketConstructor;
  private readonly storage: SyncStorage;
  private readonly backoff: Backoff;
  private readonly syncBackoff = new Backoff({ base: 1000, max: 30_000 });
  private current: State = "idle";
  private conn: Connection | null = null;
  /** Bumped by connect() and close(): async steps of an older run stop. */
  private generation = 0;
  private reconnectTimer?: ReturnType<typeof setTimeout>;
  private syncTimer?: ReturnType<typeof setTimeout>;
  private ackTimer?: ReturnType<typeof setTimeout>;
  private onlineListener?: () => void;

  private deviceKey: string | undefined;
  private primaryRoom: string | undefined;
  private acceptedOps: Set<number> | undefined;
  private readonly joined = new Set<string>();

  private sync: SyncState | null = null;
  private storageKey: string | null = null;
  private savedPosition = "";
  private readWanted = 0;
  private readSent = 0;
  private readonly sends = new Map<string, PendingSend>();

  constructor(options: ClientOptions) {
    super();
    this.options = options;
    const impl = options.WebSocket ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
    if (!impl) {
      throw new TypeError("no WebSocket implementation: pass options.WebSocket (e.g. the ws package's) on Node 20");
    }
    this.WebSocketImpl = impl;
    this.storage = options.storage ?? memoryStorage();
    this.backoff = new Backoff(options.backoff);
    this.deviceKey = options.key;
    this.primaryRoom = options.room;
    this.acceptedOps = options.accepts ? new Set(options.accepts) : undefined;
  }

  /** The connection state. */
  get state(): State {
    return this.current;
  }

  /** The device key sent in the token (known after the first connect; "" lets rim pick one). */
  get key(): string {
    return this.deviceKey ?? "";
  }

  /** The primary room (the one op 3 counts), as last asked for. */
  get room(): string {
    return this.primaryRoom ?? "";
  }

  /** The rooms joined with `joinRoom` (ops 24–27), rejoined after each reconnect. */
  get rooms(): string[] {
    return [...this.joined];
  }

  /** The ops keyed pushes and broadcasts are filtered by. */
  get accepts(): number[] {
    return [...(this.acceptedOps ?? [])];
  }

  /** IM mode: the epoch and the last seq held without a gap (null before the first connect). */
  get position(): SyncPosition | null {
    return this.sync?.position ?? null;
  }

  /** Connects, and keeps reconnecting until `close()`. */
  connect(): void {
    if (this.current === "connecting" || this.current === "connected" || this.current === "reconnecting") return;
    this.backoff.reset();
    this.watchOnline();
    void this.open(++this.generation);
  }

  /** Closes for good: no reconnect; unanswered sends reject. `connect()` starts again. */
  close(): void {
    if (this.current === "closed") return;
    this.generation++;
    clearTimeout(this.reconnectTimer);
    clearTimeout(this.syncTimer);
    clearTimeout(this.ackTimer);
    this.ackTimer = undefined;
    if (this.onlineListener) {
      (globalThis as unknown as EventTarget).removeEventListener?.("online", this.onlineListener);
      this.onlineListener = undefined;
    }
    const conn = this.conn;
    if (conn) {
      // The ack not yet sent goes out with the close.
      const ack = conn.authed ? this.sync?.ack() : null;
      if (ack) this.write(conn, Op.Ack, JSON.stringify({ seq: ack }));
      this.teardown(conn, "closed by the client");
      try {
        conn.socket.close(1000, "bye");
      } catch {
        // already closing
      }
    }
    for (const send of this.sends.values()) send.reject(new RimError(0, "client closed", send.id));
    this.sends.clear();
    this.setState("closed", { reason: "closed by the client" });
  }

  /**
   * Sends a chat message (op 4; IM mode). Resolves when rim stored or pushed
   * it (op 5 code 0); rejects with a RimError carrying op 5's code and reason
   * otherwise. Until answered it is sent again, with the same id, after every
   * reconnect (rim stores an id once).
   */
  send(message: OutgoingMessage): Promise<SendResult> {
    if (!this.options.im) return Promise.reject(new RimError(0, "send needs im: true"));
    const id = message.id ?? `${Date.now().toString(36)}-${randomHex(6)}`;
    const existing = this.sends.get(id);
    if (existing) return Promise.reject(new RimError(0, "a send with this id is unanswered", id));
    const wire: Record<string, unknown> = {};
    if (message.to !== undefined) wire.to = message.to;
    if (message.group !== undefined) wire.group = message.group;
    if (message.room !== undefined) wire.room = message.room;
    wire.op = message.op ?? 1000;
    wire.id = id;
    wire.body = message.body;
    return new Promise((resolve, reject) => {
      const pending: PendingSend = { id, body: JSON.stringify(wire), resolve, reject };
      this.sends.set(id, pending);
      if (this.conn?.authed) this.writeSend(this.conn, pending);
    });
  }

  /** Marks everything up to `seq` (default: the last held) read (op 22); the user's other devices get op 23. */
  markRead(seq?: number): void {
    const upto = seq ?? this.sync?.last ?? 0;
    if (!this.options.im || upto <= this.readWanted) return;
    this.readWanted = upto;
    if (this.conn?.authed) this.sendRead(this.conn);
  }

  /**
   * Replaces the primary room (op 12; `""` leaves it). The room is kept for
   * reconnects at once; the promise settles with op 13 (at once when not
   * connected).
   */
  changeRoom(room: string): Promise<void> {
    this.primaryRoom = room;
    return this.request(Op.ChangeRoom, room);
  }

  /**
   * Joins another room (op 24, rim's many-rooms extension); joined rooms are
   * joined again after reconnects. Rejects with op 25's code and reason when
   * refused (then it is not kept).
   */
  async joinRoom(room: string): Promise<void> {
    this.joined.add(room);
    try {
      await this.request(Op.JoinRoom, room);
    } catch (err) {
      if (err instanceof RimError && err.code !== 0) this.joined.delete(room);
      throw err;
    }
  }

  /** Leaves a room joined with `joinRoom` (op 26). */
  leaveRoom(room: string): Promise<void> {
    this.joined.delete(room);
    return this.request(Op.LeaveRoom, room);
  }

  /** Adds ops to the accepts (op 14); kept for reconnects. */
  subscribe(ops: number[]): Promise<void> {
    this.acceptedOps ??= new Set();
    for (const op of ops) this.acceptedOps.add(op);
    return this.request(Op.Sub, ops.join(","));
  }

  /** Removes ops from the accepts (op 16); kept for reconnects. */
  unsubscribe(ops: number[]): Promise<void> {
    for (const op of ops) this.acceptedOps?.delete(op);
    return this.request(Op.Unsub, ops.join(","));
  }

  // === connecting ===

  private async open(generation: number): Promise<void> {
    this.setState("connecting");
    let url: string;
    let body: string;
    try {
      url = await resolve(this.options.url);
      const token = await resolve(this.options.token);
      if (generation !== this.generation) return;
      body = await this.authBody(token);
    } catch (err) {
      if (generation !== this.generation) return;
      this.emit("error", err instanceof Error ? err : new Error(String(err)));
      this.retry(`no url or token: ${err instanceof Error ? err.message : String(err)}`);
      return;
    }
    if (generation !== this.generation) return;

    let socket: WebSocket;
    try {
      socket = new this.WebSocketImpl(url);
    } catch (err) {
      this.retry(`cannot open ${url}: ${err instanceof Error ? err.message : String(err)}`);
      return;
    }
    socket.binaryType = "arraybuffer";
    const conn: Connection = {
      socket,
      authed: false,
      seq: 0,
      requests: new Map(),
      sends: new Map(),
      outbox: [],
      sentAt: [],
      timers: new Set(),
    };
    this.conn = conn;
    this.later(conn, this.options.connectTimeout ?? 10_000, () => this.drop(conn, "connect timeout"));
    socket.onopen = () => this.write(conn, Op.Auth, body);
    socket.onmessage = (event: MessageEvent) => this.receive(conn, event.data);
    socket.onclose = (event: CloseEvent) => {
      if (this.conn !== conn) return;
      this.teardown(conn, "connection lost");
      this.retry(event.reason || `closed (${event.code})`);
    };
    socket.onerror = () => {
      // A close event follows.
    };
  }

  /** op 7's body: the token with the client's key, room, accepts, and in IM mode `im` and `since`. */
  private async authBody(token: Token): Promise<string> {
    const object: TokenObject = typeof token === "string" ? { token } : { ...token };
    this.deviceKey ??= typeof object.key === "string" && object.key ? object.key : this.options.im ? randomHex(8) : "";
    this.primaryRoom ??= typeof object.room_id === "string" ? object.room_id : undefined;
    if (!this.acceptedOps && Array.isArray(object.accepts)) this.acceptedOps = new Set(object.accepts as number[]);
    object.key = this.deviceKey;
    if (this.primaryRoom !== undefined) object.room_id = this.primaryRoom;
    if (this.acceptedOps) object.accepts = [...this.acceptedOps];
    if (this.options.im) {
      await this.loadPosition(object);
      object.im = true;
      object.since = this.sync!.since();
    }
    return JSON.stringify(object);
  }

  /** Loads the user's sync position when the user is new to this client. */
  private async loadPosition(token: TokenObject): Promise<void> {
    const user = typeof token.token === "string" ? jwtUser(token.token) : token.mid !== undefined ? String(token.mid) : null;
    const key = this.options.storageKey ?? `rim:sync:${user ?? 0}`;
    if (this.sync && key === this.storageKey) return;
    const saved = await this.storage.getItem(key);
    let position: SyncPosition = { epoch: null, last: 0 };
    let parsed: Partial<SyncPosition> | null = null;
    try {
      parsed = saved ? (JSON.parse(saved) as Partial<SyncPosition>) : null;
    } catch {
      this.emit("error", new Error(`ignoring an unreadable sync position under ${key}: ${saved}`));
    }
    if (parsed && Number.isInteger(parsed.last) && (typeof parsed.epoch === "string" || parsed.epoch === null)) {
      position = { epoch: parsed.epoch, last: parsed.last! };
    }
    this.storageKey = key;
    this.sync = new SyncState(position);
    this.savedPosition = JSON.stringify(position);
    this.readWanted = this.readSent = 0;
  }

  /** op 8: the session is up. */
  private authed(conn: Connection): void {
    conn.authed = true;
    this.backoff.reset();
    this.setState("connected");
    this.heartbeat(conn);
    conn.heartbeat = setInterval(() => this.heartbeat(conn), this.options.heartbeatInterval ?? 30_000);
    for (const room of this.joined) {
      this.request(Op.JoinRoom, room).catch((err: RimError) => {
        if (err.code !== 0) this.joined.delete(room);
        this.emit("error", new RimError(err.code, `rejoining ${room}: ${err.reason}`));
      });
    }
    for (const send of this.sends.values()) this.writeSend(conn, send);
    if (this.readWanted > this.readSent) this.sendRead(conn);
    if (this.sync && this.sync.last > this.sync.acked) this.scheduleAck();
  }

  private heartbeat(conn: Connection): void {
    this.write(conn, Op.Heartbeat);
    if (conn.heartbeatDeadline === undefined) {
      conn.heartbeatDeadline = this.later(conn, this.options.heartbeatTimeout ?? 10_000, () =>
        this.drop(conn, "heartbeat timeout"),
      );
    }
  }

  /** Gives up on a connection that stopped answering, without waiting for its close. */
  private drop(conn: Connection, reason: string): void {
    if (this.conn !== conn) return;
    this.teardown(conn, reason);
    try {
      conn.socket.close(4000, reason);
    } catch {
      // already closing
    }
    this.retry(reason);
  }

  /** Forgets a connection: its timers, queued frames and unanswered requests. */
  private teardown(conn: Connection, reason: string): void {
    if (this.conn === conn) this.conn = null;
    conn.socket.onopen = conn.socket.onmessage = conn.socket.onclose = null;
    // Keep an error listener: the ws package throws an error event nobody listens to.
    conn.socket.onerror = () => {};
    for (const timer of conn.timers) clearTimeout(timer);
    clearInterval(conn.heartbeat);
    clearTimeout(conn.flushTimer);
    conn.outbox.length = 0;
    for (const request of conn.requests.values()) request.reject(new RimError(0, reason));
    conn.requests.clear();
    clearTimeout(this.syncTimer);
    this.sync?.disconnected();
  }

  private retry(reason: string): void {
    if (this.current === "closed") return;
    const delay = this.backoff.next();
    this.setState("reconnecting", { reason, delay });
    const generation = this.generation;
    clearTimeout(this.reconnectTimer);
    this.reconnectTimer = setTimeout(() => {
      if (generation === this.generation) void this.open(generation);
    }, delay);
  }

  /** In a browser: back online means try now (or probe the connection we think we have). */
  private watchOnline(): void {
    const target = globalThis as unknown as Partial<EventTarget>;
    if (this.onlineListener || this.options.watchOnline === false || typeof target.addEventListener !== "function") return;
    this.onlineListener = () => {
      if (this.current === "reconnecting") {
        clearTimeout(this.reconnectTimer);
        void this.open(this.generation);
      } else if (this.conn?.authed) {
        this.heartbeat(this.conn);
      }
    };
    target.addEventListener("online", this.onlineListener);
  }

  private setState(state: State, extra: Partial<StateEvent> = {}): void {
    const previous = this.current;
    this.current = state;
    this.emit("state", { state, previous, attempt: this.backoff.attempt, ...extra });
  }

  // === writing ===

  private later(conn: Connection, ms: number, fn: () => void): ReturnType<typeof setTimeout> {
    const timer = setTimeout(() => {
      conn.timers.delete(timer);
      fn();
    }, ms);
    conn.timers.add(timer);
    return timer;
  }

  /** Queues one frame; returns its header seq. At most maxFramesPerSecond leave in any second. */
  private write(conn: Connection, op: number, body?: string): number {
    conn.seq = conn.seq >= 0x7fffffff ? 1 : conn.seq + 1;
    // A fresh ArrayBuffer, as WebSocket.send wants it (not a SharedArrayBuffer).
    conn.outbox.push(encodeFrame(op, conn.seq, body) as Uint8Array<ArrayBuffer>);
    this.flush(conn);
    return conn.seq;
  }

  private flush(conn: Connection): void {
    const limit = this.options.maxFramesPerSecond ?? 40;
    clearTimeout(conn.flushTimer);
    while (conn.outbox.length > 0) {
      const now = Date.now();
      while (conn.sentAt.length > 0 && conn.sentAt[0]! <= now - 1000) conn.sentAt.shift();
      if (conn.sentAt.length >= limit) {
        conn.flushTimer = setTimeout(() => this.flush(conn), conn.sentAt[0]! + 1000 - now + 1);
        return;
      }
      conn.sentAt.push(now);
      try {
        conn.socket.send(conn.outbox.shift()!);
      } catch {
        // Not open any more: its close event follows.
        conn.outbox.length = 0;
        return;
      }
    }
  }

  private request(op: number, body: string): Promise<void> {
    const conn = this.conn;
    if (!conn?.authed) return Promise.resolve();
    return new Promise((resolve, reject) => {
      conn.requests.set(this.write(conn, op, body), { op, resolve, reject });
    });
  }

  private writeSend(conn: Connection, send: PendingSend): void {
    conn.sends.set(this.write(conn, Op.SendMsg, send.body), send.id);
  }

  private sendRead(conn: Connection): void {
    this.readSent = this.readWanted;
    this.write(conn, Op.Read, JSON.stringify({ seq: this.readWanted }));
  }

  private requestSync(): void {
    const conn = this.conn;
    if (!conn?.authed || !this.sync) return;
    const body = this.sync.request(this.options.syncLimit);
    if (body) this.write(conn, Op.Sync, JSON.stringify(body));
  }

  private scheduleAck(): void {
    if (this.ackTimer !== undefined) return;
    this.ackTimer = setTimeout(() => {
      this.ackTimer = undefined;
      const conn = this.conn;
      if (!conn?.authed || !this.sync) return;
      const seq = this.sync.ack();
      if (seq !== null) this.write(conn, Op.Ack, JSON.stringify({ seq }));
    }, this.options.ackInterval ?? 1000);
  }

  private save(): void {
    if (!this.sync || this.storageKey === null) return;
    const value = JSON.stringify(this.sync.position);
    if (value === this.savedPosition) return;
    this.savedPosition = value;
    const fail = (err: unknown) => this.emit("error", new Error(`saving the sync position: ${String(err)}`));
    try {
      const done = this.storage.setItem(this.storageKey, value);
      if (done instanceof Promise) done.catch(fail);
    } catch (err) {
      fail(err);
    }
  }

  // === reading ===

  private receive(conn: Connection, data: unknown): void {
    if (this.conn !== conn) return;
    let frames: Frame[];
    try {
      const bytes =
        data instanceof ArrayBuffer
          ? new Uint8Array(data)
          : ArrayBuffer.isView(data)
            ? new Uint8Array(data.buffer, data.byteOffset, data.byteLength)
            : new TextEncoder().encode(String(data));
      frames = decodeMessage(bytes);
    } catch (err) {
      this.emit("error", err instanceof Error ? err : new Error(String(err)));
      this.drop(conn, "malformed frame");
      return;
    }
    for (const frame of frames) {
      if (this.conn !== conn) return;
      this.dispatch(conn, frame);
    }
  }

  private dispatch(conn: Connection, frame: Frame): void {
    const request = conn.requests.get(frame.seq);
    if (request && (frame.op === request.op + 1 || frame.op === request.op)) {
      conn.requests.delete(frame.seq);
      this.settle(request, frame);
      return;
    }
    switch (frame.op) {
      case Op.AuthReply:
        if (!conn.authed) {
          for (const timer of conn.timers) clearTimeout(timer);
          conn.timers.clear();
          this.authed(conn);
        }
        return;
      case Op.HeartbeatReply:
        clearTimeout(conn.heartbeatDeadline);
        conn.timers.delete(conn.heartbeatDeadline!);
        conn.heartbeatDeadline = undefined;
        if (frame.body.length >= 4) {
          const count = new DataView(frame.body.buffer, frame.body.byteOffset).getInt32(0);
          this.emit("online", { room: this.room, count });
        }
        return;
      case Op.SendMsgReply:
        if (this.sendReply(conn, frame)) return;
        break; // an op 5 push (goim v1's operation)
      case Op.SyncBegin:
        return this.syncBegin(conn, frame);
      case Op.SyncEnd:
        return this.syncEnd(frame);
      case Op.Notify: {
        const notify = parseJson<Notify>(frame.body);
        if (notify) this.emit("notify", notify);
        return;
      }
      case Op.ChangeRoomReply:
      case Op.SubReply:
      case Op.UnsubReply:
      case Op.JoinRoomReply:
      case Op.LeaveRoomReply:
        return; // replies to requests given up on
    }
    if (this.sync && frame.seq !== 0) this.stored(frame);
    else this.emit("push", payload(frame.op, frame.seq, frame.body, {}));
  }

  private settle(request: Request, frame: Frame): void {
    if (frame.op === request.op) {
      request.reject(new RimError(0, `op ${request.op} is not supported by this server`));
      return;
    }
    const refusal = frame.body[0] === 0x7b ? parseJson<{ code?: number; reason?: string }>(frame.body) : null;
    if (refusal && typeof refusal.code === "number" && refusal.code !== 0) {
      request.reject(new RimError(refusal.code, refusal.reason ?? "refused"));
    } else {
      request.resolve();
    }
  }

  /** op 5: true when it answers one of our sends. */
  private sendReply(conn: Connection, frame: Frame): boolean {
    const id = conn.sends.get(frame.seq);
    const reply = parseJson<{ id?: string; code?: number; reason?: string }>(frame.body);
    if (id === undefined || !reply || reply.id !== id || typeof reply.code !== "number") return false;
    conn.sends.delete(frame.seq);
    const send = this.sends.get(id);
    if (!send) return true;
    this.sends.delete(id);
    if (reply.code === 0) send.resolve({ id, code: 0 });
    else send.reject(new RimError(reply.code, reply.reason ?? "refused", id));
    return true;
  }

  private syncBegin(conn: Connection, frame: Frame): void {
    const begin = parseJson<SyncBegin>(frame.body);
    if (!this.sync || !begin || typeof begin.epoch !== "string" || !Number.isInteger(begin.from)) {
      this.emit("error", new Error(`malformed sync begin: ${decoder.decode(frame.body)}`));
      this.drop(conn, "malformed sync begin");
      return;
    }
    const lost = this.sync.begin(begin);
    this.save();
    if (lost) this.emit("incomplete", lost);
  }

  private syncEnd(frame: Frame): void {
    const end = parseJson<SyncEnd>(frame.body) ?? { code: 0, reason: "malformed sync end" };
    if (!this.sync) return;
    switch (this.sync.end(end)) {
      case "done":
        this.syncBackoff.reset();
        this.emit("synced", { epoch: this.sync.epoch ?? "", last: this.sync.last });
        return;
      case "sync":
        this.syncBackoff.reset();
        return this.requestSync();
      case "retry":
        this.emit("error", new RimError(end.code ?? 0, `sync refused: ${end.reason ?? ""}`));
        clearTimeout(this.syncTimer);
        this.syncTimer = setTimeout(() => this.requestSync(), this.syncBackoff.next());
    }
  }

  private stored(frame: Frame): void {
    const sync = this.sync!;
    const fromSync = sync.inPage;
    switch (sync.stored(frame.seq)) {
      case "deliver": {
        this.save();
        this.scheduleAck();
        const message: Message = payload(frame.op, frame.seq, frame.body, { epoch: sync.epoch ?? "", fromSync });
        this.emit("message", message);
        return;
      }
      case "sync":
        return this.requestSync();
      case "skip":
        return;
    }
  }
}
