// What the demo chat knows, without the DOM: the messages it shows, grouped
// into conversations, each message once; the user's read position; the
// marks on the user's own messages.
//
// Stored messages are keyed by their seq in the signed-in user's mailbox,
// whichever way they came (the SDK's `message` event, or the history read
// over HTTP), so a message seen twice is shown once. A chat message the
// user sent is also keyed by `<from>:<id>`: the pending copy shown while
// op 5 is awaited becomes the stored copy when the mailbox's echo arrives.

/** rim's chat envelope, as stored and pushed: `{from, to | group | room, id, ts, body}`. */
export interface Envelope {
  from: number;
  to?: number;
  group?: number;
  room?: string;
  id: string;
  ts: number;
  body: unknown;
}

/** `user:<mid>`, `group:<gid>`, `notices` (what the server pushed), `room` (the live room). */
export type ConvId = string;

export type ConvKind = "user" | "group" | "notices" | "room";

/** Where the user's own message stands; ordered: each replaces the one before. */
export type Status = "sending" | "sent" | "delivered" | "read" | "failed";

const RANK: Record<Status, number> = { failed: -1, sending: 0, sent: 1, delivered: 2, read: 3 };

export interface Item {
  /** `seq:<n>` for a stored message without an envelope, `<from>:<id>` with one, `live:<n>` for a push. */
  key: string;
  conv: ConvId;
  /** The seq in the signed-in user's mailbox; 0 while not stored (pending sends, room messages, pushes). */
  seq: number;
  /** Where it sorts: its seq, or just after the highest seq held when it arrived. */
  rank: number;
  from: number;
  id: string;
  ts: number;
  op: number;
  body: unknown;
  mine: boolean;
  /** Seen by the user (a visible conversation), or theirs, or below the read mark. */
  seen: boolean;
  /** The user's own chat messages. */
  status?: Status;
  /** Why a send failed: op 5's reason and code. */
  reason?: string;
  code?: number;
  /** The message sent (to send it again with the same id). */
  target?: { to?: number; group?: number; room?: string };
}

export interface Conv {
  id: ConvId;
  kind: ConvKind;
  /** The other user (`user:`) or the group (`group:`). */
  peer: number;
  last: Item | null;
}

/** The body of a stored or pushed frame as an envelope, or null when it is not one (a backend's push). */
export function asEnvelope(value: unknown): Envelope | null {
  if (typeof value !== "object" || value === null || Array.isArray(value)) return null;
  const v = value as Record<string, unknown>;
  if (typeof v.from !== "number" || typeof v.id !== "string" || typeof v.ts !== "number" || !("body" in v)) return null;
  const targets = [typeof v.to === "number", typeof v.group === "number", typeof v.room === "string"];
  if (targets.filter(Boolean).length !== 1) return null;
  return v as unknown as Envelope;
}

/** The conversation a message belongs to, seen by `me`. */
export function convOf(envelope: Envelope | null, me: number): ConvId {
  if (!envelope) return "notices";
  if (envelope.room !== undefined) return "room";
  if (envelope.group !== undefined) return `group:${envelope.group}`;
  if (envelope.from === 0) return "notices";
  const peer = envelope.from === me ? envelope.to! : envelope.from;
  return `user:${peer}`;
}

export function convKind(id: ConvId): ConvKind {
  if (id === "notices" || id === "room") return id;
  return id.startsWith("group:") ? "group" : "user";
}

/** What a message says: `{text}` bodies as text, anything else as JSON. */
export function textOf(body: unknown): { text: string; raw: boolean } {
  if (typeof body === "string") return { text: body, raw: false };
  if (typeof body === "object" && body !== null && typeof (body as { text?: unknown }).text === "string") {
    return { text: (body as { text: string }).text, raw: false };
  }
  return { text: JSON.stringify(body), raw: true };
}

export class Store {
  private readonly items = new Map<string, Item>();
  private readonly bySeq = new Map<number, Item>();
  readonly convs = new Map<ConvId, Conv>();
  /** The user's read position (the cursor's `read`, this page's op 22s, the other devices' op 23s). */
  readMark = 0;
  private maxSeq = 0;
  private order = 0;
  private pushes = 0;

  constructor(readonly me: number) {}

  /** The conversation, created empty when new. */
  conv(id: ConvId): Conv {
    let conv = this.convs.get(id);
    if (!conv) {
      const kind = convKind(id);
      conv = { id, kind, peer: kind === "user" || kind === "group" ? Number(id.split(":")[1]) : 0, last: null };
      this.convs.set(id, conv);
    }
    return conv;
  }

  /** The lowest seq held (for "load earlier"), or 0 when none. */
  get lowestSeq(): number {
    let lowest = 0;
    for (const seq of this.bySeq.keys()) if (lowest === 0 || seq < lowest) lowest = seq;
    return lowest;
  }

  /**
   * A stored message: from the SDK (`ts` unknown: the envelope's, or now)
   * or from the history (`from` and `ts` given). Returns null when it is
   * held already.
   */
  addStored(seq: number, op: number, body: unknown, meta: { from?: number; ts?: number } = {}): Item | null {
    if (this.bySeq.has(seq)) return null;
    const envelope = asEnvelope(body);
    const from = envelope?.from ?? meta.from ?? 0;
    const key = envelope ? `${envelope.from}:${envelope.id}` : `seq:${seq}`;
    const pending = this.items.get(key);
    if (pending && pending.seq === 0) {
      // Our own message, shown since it was typed: now it has its seq.
      pending.seq = seq;
      pending.rank = seq;
      pending.ts = envelope?.ts ?? pending.ts;
      if (pending.status === "sending") pending.status = "sent";
      this.bySeq.set(seq, pending);
      this.maxSeq = Math.max(this.maxSeq, seq);
      this.touch(pending);
      return pending;
    }
    if (pending) return null; // the same message under another seq: shown once
    const mine = from === this.me && from !== 0;
    const item: Item = {
      key,
      conv: convOf(envelope, this.me),
      seq,
      rank: seq,
      from,
      id: envelope?.id ?? String(seq),
      ts: envelope?.ts ?? meta.ts ?? Date.now(),
      op,
      body: envelope ? envelope.body : body,
      mine,
      seen: mine || seq <= this.readMark,
      status: mine ? "sent" : undefined,
    };
    this.items.set(key, item);
    this.bySeq.set(seq, item);
    this.maxSeq = Math.max(this.maxSeq, seq);
    this.touch(item);
    return item;
  }

  /** A frame that is not stored: a room message (an envelope with `room`), or a backend's push. */
  addPush(op: number, body: unknown): Item | null {
    const envelope = asEnvelope(body);
    const key = envelope ? `${envelope.from}:${envelope.id}` : `live:${++this.pushes}`;
    const existing = this.items.get(key);
    if (existing) {
      // The echo of our own room message.
      if (existing.status === "sending") existing.status = "sent";
      return null;
    }
    const mine = envelope !== null && envelope.from === this.me;
    const item: Item = {
      key,
      conv: envelope ? convOf(envelope, this.me) : "notices",
      seq: 0,
      rank: this.maxSeq + 0.5,
      from: envelope?.from ?? 0,
      id: envelope?.id ?? key,
      ts: envelope?.ts ?? Date.now(),
      op,
      body: envelope ? envelope.body : body,
      mine,
      seen: mine,
      status: mine ? "sent" : undefined,
    };
    item.rank += ++this.order * 1e-9;
    this.items.set(key, item);
    this.touch(item);
    return item;
  }

  /** The user's own message, shown at once while op 5 is awaited. */
  addPending(conv: ConvId, id: string, body: unknown, target: Item["target"]): Item {
    const item: Item = {
      key: `${this.me}:${id}`,
      conv,
      seq: 0,
      rank: this.maxSeq + 0.5 + ++this.order * 1e-9,
      from: this.me,
      id,
      ts: Date.now(),
      op: 1000,
      body,
      mine: true,
      seen: true,
      status: "sending",
      target,
    };
    this.items.set(item.key, item);
    this.touch(item);
    return item;
  }

  /** Raises an own message's mark (never lowers it; `failed` and `sending` replace anything). */
  setStatus(item: Item, status: Status, reason?: { reason: string; code: number }): void {
    if (status === "failed" || status === "sending" || item.status === "failed" || RANK[status] > RANK[item.status ?? "sending"]) {
      item.status = status;
    }
    item.reason = reason?.reason;
    item.code = reason?.code;
  }

  /**
   * Marks the user's messages in `conv` up to the one keyed `key` (in this
   * mailbox's order) `status`: the peer delivered or read up to it.
   * Returns whether anything changed.
   */
  markUpTo(conv: ConvId, key: string, status: "delivered" | "read"): boolean {
    const upto = this.items.get(key);
    if (!upto || upto.seq === 0) return false;
    let changed = false;
    for (const item of this.list(conv)) {
      if (!item.mine || item.seq === 0 || item.seq > upto.seq || item.status === "failed") continue;
      if (RANK[status] > RANK[item.status ?? "sending"]) {
        item.status = status;
        changed = true;
      }
    }
    return changed;
  }

  /** The messages of a conversation, in order. */
  list(conv: ConvId): Item[] {
    return [...this.items.values()].filter((i) => i.conv === conv).sort((a, b) => a.rank - b.rank);
  }

  unread(conv: ConvId): number {
    let n = 0;
    for (const item of this.items.values()) if (item.conv === conv && !item.seen) n++;
    return n;
  }

  /** The user saw `conv`: its messages are seen. Returns the read position that gives (see `readable`). */
  see(conv: ConvId): number {
    for (const item of this.items.values()) if (item.conv === conv) item.seen = true;
    return this.readable();
  }

  /**
   * How far the user has read, as one mailbox seq (op 22 is one position
   * for the whole mailbox): up to just before the first stored message not
   * seen yet, whatever conversation it is in, so that a message in another
   * conversation is never marked read unseen. Seqs not held (older than the
   * history read, or trimmed) do not hold it back.
   */
  readable(): number {
    let upto = this.readMark;
    const held = [...this.bySeq.keys()].filter((s) => s > this.readMark).sort((a, b) => a - b);
    for (const seq of held) {
      if (!this.bySeq.get(seq)!.seen) return Math.max(seq - 1, this.readMark);
      upto = seq;
    }
    return upto;
  }

  /** The read position moved (op 23 from another device, or the cursor): messages up to it are seen. */
  setReadMark(seq: number): boolean {
    if (seq <= this.readMark) return false;
    this.readMark = seq;
    for (const item of this.bySeq.values()) if (item.seq <= seq) item.seen = true;
    return true;
  }

  /** Keeps the latest `keep` messages of a conversation of messages that are not stored (the room). */
  trim(conv: ConvId, keep: number): void {
    const list = this.list(conv);
    for (const item of list.slice(0, Math.max(0, list.length - keep))) {
      if (item.seq === 0) this.items.delete(item.key);
    }
  }

  /** Forgets every stored message (a new mailbox epoch: the seqs start again). */
  clearStored(): void {
    for (const [key, item] of this.items) if (item.seq !== 0) this.items.delete(key);
    this.bySeq.clear();
    this.maxSeq = 0;
    this.readMark = 0;
    for (const conv of this.convs.values()) conv.last = this.list(conv.id).at(-1) ?? null;
  }

  /** Conversations, the latest activity first (the room is listed on its own). */
  ordered(): Conv[] {
    return [...this.convs.values()]
      .filter((c) => c.kind !== "room")
      .sort((a, b) => (b.last?.ts ?? Infinity) - (a.last?.ts ?? Infinity) || a.id.localeCompare(b.id));
  }

  private touch(item: Item): void {
    const conv = this.conv(item.conv);
    if (!conv.last || item.rank >= conv.last.rank) conv.last = item;
  }
}
