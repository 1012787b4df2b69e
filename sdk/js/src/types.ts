/** The public types of the client: tokens, options, messages and events. */

import type { BackoffOptions } from "./backoff.js";
import type { Incomplete } from "./sync.js";

/** goim's JSON token (op 7). rim adds `im` and `since`, which the client fills in. */
export interface TokenObject {
  mid?: number;
  key?: string;
  room_id?: string;
  platform?: string;
  accepts?: number[];
  /** JWT mode: a JWT inside the JSON token. */
  token?: string;
  [field: string]: unknown;
}

/** A JSON token, or a JWT (compact `header.payload.signature`). */
export type Token = TokenObject | string;

/** A value, or a function giving it (maybe asynchronously), called before each connect. */
export type Provider<T> = T | (() => T | Promise<T>);

/**
 * Key-value persistence for the sync position. `window.localStorage` fits as
 * it is; the methods may also return promises.
 */
export interface SyncStorage {
  getItem(key: string): string | null | Promise<string | null>;
  setItem(key: string, value: string): void | Promise<void>;
}

/** The WebSocket constructor: the browser's, Node's (22+, or 20 with --experimental-websocket), or `ws`. */
export type WebSocketConstructor = new (url: string) => WebSocket;

export interface ClientOptions {
  /** The comet's WebSocket URL (`ws://host:3102/sub`), or a function choosing one before each connect (see `weightedNodes`). */
  url: Provider<string>;
  /**
   * The auth token: a goim JSON token (`{mid, room_id, platform, accepts}`) or
   * a JWT string. A function is called before every connect and reconnect, so it
   * can fetch a fresh token from your backend.
   */
  token: Provider<Token>;
  /** IM mode (`"im": true`): stored messages, sync, acks, read marks and `send()`. Default false. */
  im?: boolean;
  /** The device key. Default: the token's `key`; in IM mode else one random key per client instance; otherwise empty (the server picks). */
  key?: string;
  /** The primary room (op 12's); default the token's `room_id`. */
  room?: string;
  /** Business ops to receive (keyed pushes and broadcasts are filtered by them); default the token's `accepts`. */
  accepts?: number[];
  /** Where the sync position is kept (e.g. `localStorage`); default in memory. */
  storage?: SyncStorage;
  /** The storage key of this user's position; default `rim:sync:<mid>` (mid from the token or the JWT's `sub`/`mid` claim). */
  storageKey?: string;
  /** The WebSocket implementation; default `globalThis.WebSocket`. */
  WebSocket?: WebSocketConstructor;
  /** Heartbeat (op 2) interval in ms; default 30 000 (goim's clients). The server drops a connection silent for 8 min. */
  heartbeatInterval?: number;
  /** A heartbeat not answered (op 3) within this many ms means the connection is dead: reconnect. Default 10 000. */
  heartbeatTimeout?: number;
  /** The WebSocket open plus op 7/op 8 must finish within this many ms; default 10 000. */
  connectTimeout?: number;
  /** Reconnect delays; default 500 ms doubling to 30 s, half of each random. */
  backoff?: BackoffOptions;
  /** Acks (op 21) are sent at most this often, in ms; default 1 000. */
  ackInterval?: number;
  /** op 18's page size (1 to 500); default the server's (200). */
  syncLimit?: number;
  /** Most frames sent in any second; the server closes a connection over 50. Default 40. */
  maxFramesPerSecond?: number;
  /** Reconnect at once when the browser says it is back online (`online` event). Default true. */
  watchOnline?: boolean;
}

/** Connection states. */
export type State =
  /** created, `connect()` not called yet */
  | "idle"
  /** opening the WebSocket and authenticating */
  | "connecting"
  /** authenticated (op 8 received) */
  | "connected"
  /** lost; waiting `delay` ms before the next attempt */
  | "reconnecting"
  /** `close()` was called; nothing more happens */
  | "closed";

export interface StateEvent {
  state: State;
  previous: State;
  /** Why the connection ended (a close reason such as `auth_failed`, `heartbeat timeout`, ...), for `reconnecting` and `closed`. */
  reason?: string;
  /** `reconnecting`: the wait before the next attempt, in ms. */
  delay?: number;
  /** Attempts since the last success (0 on the first connect). */
  attempt: number;
}

/** A message to send (op 4): exactly one of `to`, `group`, `room`. */
export interface OutgoingMessage {
  to?: number;
  group?: number;
  room?: string;
  /** The business op, 1000 or more; default 1000. */
  op?: number;
  /** Any JSON value, at most 2048 bytes of JSON by default. */
  body: unknown;
  /** The message id (1 to 40 printable ASCII characters, no spaces); default a random one. Resends use the same. */
  id?: string;
}

/** A send that rim accepted (op 5 code 0). */
export interface SendResult {
  id: string;
  code: 0;
}

/** A business frame: a push (seq 0) or a stored message. */
export interface Push {
  op: number;
  /** 0 for a push, the mailbox seq for a stored message. */
  seq: number;
  /** The raw body. */
  body: Uint8Array;
  /** The body as UTF-8 text. */
  text(): string;
  /** The body parsed as JSON (throws when it is not). */
  json<T = unknown>(): T;
}

/** A stored message, in order, each once. */
export interface Message extends Push {
  /** The mailbox's epoch. */
  epoch: string;
  /** True when it came in a sync page, false when live. */
  fromSync: boolean;
}

/** The envelope rim stores for a message a client sent (op 4), as `message.json()` gives it. */
export interface ChatEnvelope<B = unknown> {
  from: number;
  to?: number;
  group?: number;
  room?: string;
  id: string;
  ts: number;
  body: B;
}

/** op 23. */
export interface Notify {
  kind: string;
  seq: number;
  [field: string]: unknown;
}

export interface OnlineEvent {
  /** The primary room. */
  room: string;
  /** Its online count, from the heartbeat reply (op 3). */
  count: number;
}

export interface SyncedEvent {
  epoch: string;
  /** The last seq held. */
  last: number;
}

/** Every event and its payload. */
export interface ClientEvents {
  state: StateEvent;
  /** A frame that is not stored: a push, a room message, a broadcast. */
  push: Push;
  /** A stored message (IM mode), exactly once, in seq order. */
  message: Message;
  /** op 19 said `complete: false`: messages after `previousLast` are gone (fetch them from your backend or show a gap). */
  incomplete: Incomplete;
  /** A sync finished: everything up to `last` is held. */
  synced: SyncedEvent;
  /** The primary room's online count (every heartbeat reply). */
  online: OnlineEvent;
  /** op 23 from the user's other devices, e.g. `{kind: "read", seq}`. */
  notify: Notify;
  /** Something went wrong that the client handles itself (a refused sync, a rejoin, a bad frame, a token callback). */
  error: Error;
}
