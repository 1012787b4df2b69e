// The IM sync state machine: docs/protocol.md's client rules, frame by frame.
import assert from "node:assert/strict";
import { test } from "node:test";
import { SyncState } from "../../dist/index.js";

const begin = (epoch, from, extra = {}) => ({ epoch, from, first: 1, top: from + 5, complete: true, ...extra });

test("a fresh device syncs from 0, takes the epoch and holds each seq once", () => {
  const sync = new SyncState();
  assert.deepEqual(sync.since(), { seq: 0 });
  assert.equal(sync.request(), null, "the token's since is outstanding");
  assert.equal(sync.begin(begin("E1", 1, { top: 2 })), null, "a mailbox from 1 is complete");
  assert.equal(sync.epoch, "E1");
  assert.deepEqual([sync.stored(1), sync.stored(2)], ["deliver", "deliver"]);
  assert.equal(sync.end({ last: 2, more: false }), "done");
  assert.deepEqual(sync.position, { epoch: "E1", last: 2 });
  // Live frames after the sync.
  assert.equal(sync.stored(3), "deliver");
  assert.equal(sync.stored(3), "sync", "a seq at or below last outside a page asks (a new epoch?)");
});

test("since carries the epoch once known", () => {
  const sync = new SyncState({ epoch: "E1", last: 41 });
  assert.deepEqual(sync.since(), { seq: 41, epoch: "E1" });
});

test("a page skips what is held and delivers from last + 1", () => {
  const sync = new SyncState({ epoch: "E1", last: 5 });
  sync.since();
  sync.begin(begin("E1", 6));
  sync.end({ last: 5, more: false });
  assert.equal(sync.request().seq, 5);
  // An op 18 is answered from its seq on, even messages sent live before.
  assert.equal(sync.stored(6), "skip", "live frames queued before the page are left to it");
  sync.begin(begin("E1", 4));
  assert.deepEqual([sync.stored(4), sync.stored(5), sync.stored(6), sync.stored(7)], ["skip", "skip", "deliver", "deliver"]);
  assert.equal(sync.end({ last: 7, more: false }), "done");
  assert.equal(sync.last, 7);
});

test("a live gap asks for a sync, one at a time, and frames during it are left to it", () => {
  const sync = new SyncState({ epoch: "E1", last: 10 });
  sync.since();
  sync.begin(begin("E1", 11));
  assert.equal(sync.end({ last: 10, more: false }), "done");
  assert.equal(sync.stored(13), "sync", "12 is missing");
  assert.deepEqual(sync.request(), { seq: 10, epoch: "E1" });
  assert.equal(sync.request(), null, "one op 18 at a time");
  assert.equal(sync.stored(11), "skip", "frames queued before op 19 come with the page");
  assert.equal(sync.stored(14), "skip");
  sync.begin(begin("E1", 11));
  assert.deepEqual([sync.stored(11), sync.stored(12), sync.stored(13), sync.stored(14)], Array(4).fill("deliver"));
  assert.equal(sync.end({ last: 14, more: false }), "done");
  assert.equal(sync.stored(15), "deliver");
});

test("after op 20, a seq skipped beyond the page asks again", () => {
  const sync = new SyncState({ epoch: "E1", last: 10 });
  sync.since();
  assert.equal(sync.stored(12), "skip");
  sync.begin(begin("E1", 11));
  assert.equal(sync.stored(11), "deliver");
  assert.equal(sync.end({ last: 11, more: false }), "sync", "12 was skipped and the page ended before it");
  assert.deepEqual(sync.request(), { seq: 11, epoch: "E1" });
});

test("a gap inside a page is not delivered past", () => {
  const sync = new SyncState({ epoch: "E1", last: 0 });
  sync.since();
  sync.begin(begin("E1", 1));
  assert.deepEqual([sync.stored(1), sync.stored(3)], ["deliver", "skip"]);
  assert.equal(sync.last, 1);
  assert.equal(sync.end({ last: 3, more: false }), "sync");
});

test("a cut page (more: true) asks for the next from last", () => {
  const sync = new SyncState({ epoch: "E1", last: 0 });
  sync.since();
  sync.begin(begin("E1", 1));
  sync.stored(1);
  sync.stored(2);
  assert.equal(sync.end({ last: 2, more: true }), "sync");
  assert.deepEqual(sync.request(50), { seq: 2, epoch: "E1", limit: 50 });
});

test("a refused sync (op 20 with a code) retries later", () => {
  const sync = new SyncState({ epoch: "E1", last: 3 });
  sync.since();
  assert.equal(sync.end({ code: 503, reason: "unavailable" }), "retry");
  assert.equal(sync.syncing, false);
  assert.deepEqual(sync.request(), { seq: 3, epoch: "E1" });
});

test("complete: false reports what is gone and moves last to from - 1", () => {
  const sync = new SyncState({ epoch: "E1", last: 3 });
  sync.since();
  sync.ack();
  const lost = sync.begin({ epoch: "E1", from: 20, first: 20, top: 30, complete: false });
  assert.deepEqual(lost, {
    epoch: "E1",
    from: 20,
    first: 20,
    top: 30,
    previousEpoch: "E1",
    previousLast: 3,
    newEpoch: false,
  });
  assert.equal(sync.last, 19);
  assert.equal(sync.stored(20), "deliver");
  assert.equal(sync.ack(), 20, "acks go on in the same epoch");
});

test("a new epoch is a new history: its seqs restart and acks with them", () => {
  const sync = new SyncState({ epoch: "OLD", last: 500 });
  sync.since();
  assert.equal(sync.ack(), 500);
  const lost = sync.begin({ epoch: "NEW", from: 1, first: 1, top: 2, complete: false });
  assert.equal(lost.newEpoch, true);
  assert.equal(lost.previousEpoch, "OLD");
  assert.deepEqual([sync.stored(1), sync.stored(2)], ["deliver", "deliver"]);
  assert.equal(sync.ack(), 2, "the old epoch's acked 500 does not hide the new seqs");
  assert.deepEqual(sync.position, { epoch: "NEW", last: 2 });
});

test("acks are cumulative and sent only when something new is held", () => {
  const sync = new SyncState({ epoch: "E1", last: 0 });
  assert.equal(sync.ack(), null);
  sync.since();
  sync.begin(begin("E1", 1));
  for (const seq of [1, 2, 3]) sync.stored(seq);
  assert.equal(sync.ack(), 3);
  assert.equal(sync.ack(), null);
  sync.stored(4);
  assert.equal(sync.ack(), 4);
});

test("a lost connection voids the outstanding sync; the next since starts over", () => {
  const sync = new SyncState({ epoch: "E1", last: 7 });
  sync.since();
  sync.begin(begin("E1", 8));
  sync.stored(8);
  sync.disconnected();
  assert.equal(sync.inPage, false);
  assert.equal(sync.syncing, false);
  assert.deepEqual(sync.since(), { seq: 8, epoch: "E1" });
  assert.equal(sync.stored(9), "skip", "nothing live is taken before the new page");
});
