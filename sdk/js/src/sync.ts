/**
 * The IM sync state machine (docs/protocol.md, "The client's rules"): it
 * keeps (epoch, last contiguous seq), decides which stored frames reach the
 * application, when to send op 18 and what to ack. Pure: the client feeds it
 * what arrives and carries out what it answers.
 */

/** Where a device's copy of its mailbox ends. */
export interface SyncPosition {
  /** The mailbox's epoch as of the latest op 19; null before the first sync. */
  epoch: string | null;
  /** The last seq held without a gap (0: none). */
  last: number;
}

/** op 19, sync begin. */
export interface SyncBegin {
  epoch: string;
  from: number;
  first: number;
  top: number;
  complete: boolean;
}

/** op 20, sync end: a page's end, or a refusal with a code. */
export interface SyncEnd {
  last?: number;
  more?: boolean;
  code?: number;
  reason?: string;
}

/** op 18's body. */
export interface SyncRequest {
  seq: number;
  epoch?: string;
  limit?: number;
}

/** What happened to messages the device never saw (op 19 with `complete: false`). */
export interface Incomplete {
  /** The mailbox's epoch now. */
  epoch: string;
  /** Where the page starts: messages before it (after `previousLast`) are gone. */
  from: number;
  first: number;
  top: number;
  /** The device's position before this sync. */
  previousEpoch: string | null;
  previousLast: number;
  /** True when the epoch changed: the store holds a new history, old seqs mean nothing. */
  newEpoch: boolean;
}

/** What to do with a stored frame. */
export type StoredVerdict =
  /** hand it to the application: it is `last` now */
  | "deliver"
  /** drop it: already held, or an outstanding sync brings it */
  | "skip"
  /** drop it and send op 18 now (`request()` gives the body): a gap, or a seq going backwards */
  | "sync";

/** What to do after op 20. */
export type EndVerdict =
  /** caught up */
  | "done"
  /** send op 18 again at once (`request()`): the page was cut, or frames were skipped past it */
  | "sync"
  /** refused (the code and reason are in the op 20): send op 18 again after a back-off */
  | "retry";

export class SyncState {
  epoch: string | null;
  last: number;
  /** The highest seq acked (op 21) in this epoch. */
  acked = 0;
  /** An op 18 (or the token's `since`) is outstanding: no other op 18 until its op 20. */
  syncing = false;
  /** Between op 19 and op 20: stored frames are the page's. */
  inPage = false;
  /** The highest seq dropped while a sync was outstanding. */
  private skipped = 0;

  constructor(position: SyncPosition = { epoch: null, last: 0 }) {
    this.epoch = position.epoch;
    this.last = position.last;
  }

  get position(): SyncPosition {
    return { epoch: this.epoch, last: this.last };
  }

  /** The token's `since` for a new connection: the server syncs from it after op 8. */
  since(): SyncRequest {
    this.syncing = true;
    this.inPage = false;
    this.skipped = 0;
    return this.epoch === null ? { seq: this.last } : { seq: this.last, epoch: this.epoch };
  }

  /** The connection is gone: whatever was outstanding is void. */
  disconnected(): void {
    this.syncing = false;
    this.inPage = false;
    this.skipped = 0;
  }

  /** Starts a sync: op 18's body, or null when one is outstanding already. */
  request(limit?: number): SyncRequest | null {
    if (this.syncing) return null;
    this.syncing = true;
    this.skipped = 0;
    const body: SyncRequest = { seq: this.last };
    if (this.epoch !== null) body.epoch = this.epoch;
    if (limit !== undefined) body.limit = limit;
    return body;
  }

  /** op 19. Returns what is gone when the page does not follow on from `last`. */
  begin(begin: SyncBegin): Incomplete | null {
    this.inPage = true;
    if (begin.epoch === this.epoch && begin.complete) return null;
    const lost: Incomplete = {
      epoch: begin.epoch,
      from: begin.from,
      first: begin.first,
      top: begin.top,
      previousEpoch: this.epoch,
      previousLast: this.last,
      newEpoch: this.epoch !== null && begin.epoch !== this.epoch,
    };
    if (begin.epoch !== this.epoch) this.acked = 0;
    this.epoch = begin.epoch;
    this.last = begin.from - 1;
    // A first sync of a mailbox that still starts at 1 is not a loss.
    return begin.complete ? null : lost;
  }

  /** A stored frame (header seq ≠ 0). */
  stored(seq: number): StoredVerdict {
    if (seq === this.last + 1 && (this.inPage || !this.syncing)) {
      this.last = seq;
      return "deliver";
    }
    if (this.inPage) {
      // At or below last: held already. Above: not dense; the next sync fetches it.
      if (seq > this.last) this.skipped = Math.max(this.skipped, seq);
      return "skip";
    }
    if (this.syncing) {
      // Queued before the outstanding sync began: its page (or the next) has it.
      this.skipped = Math.max(this.skipped, seq);
      return "skip";
    }
    // A gap (above last + 1), or going backwards (maybe a new epoch): ask.
    return "sync";
  }

  /** op 20. */
  end(end: SyncEnd): EndVerdict {
    this.inPage = false;
    this.syncing = false;
    if (end.code !== undefined) return "retry";
    const behind = Math.max(this.skipped, end.last ?? 0) > this.last;
    this.skipped = 0;
    return end.more || behind ? "sync" : "done";
  }

  /** The seq to ack now (op 21), or null when nothing new is held. */
  ack(): number | null {
    if (this.last <= this.acked) return null;
    this.acked = this.last;
    return this.acked;
  }
}
