// The SDK against a real `rim standalone` (see rim.js): chat one to one and
// in groups, offline catch-up, refused sends, rooms, read notifies, acks.
// Each test uses its own user ids, so they share one server.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { RimError } from "../../dist/index.js";
import { collect, connectClient, connected, eventually, mapStorage, startRim, waitFor } from "./rim.js";

let rim;
const clients = [];
before(async () => {
  rim = await startRim();
});
after(async () => {
  for (const client of clients) client.close();
  await rim?.stop();
});

/** An IM client of user `mid`, connected. */
async function im(mid, options = {}) {
  const client = connectClient(rim, { token: { mid, platform: "web" }, im: true, ...options });
  clients.push(client);
  return connected(client);
}

test("one to one: send resolves on op 5, both mailboxes get the envelope once", async () => {
  const alice = await im(101);
  const bob = await im(102);
  const bobGot = collect(bob, "message");
  const aliceGot = collect(alice, "message");
  const result = await alice.send({ to: 102, body: { text: "hi bob" }, id: "a-1" });
  assert.deepEqual(result, { id: "a-1", code: 0 });
  await eventually(() => bobGot.length >= 1 && aliceGot.length >= 1, 5000, "delivery");
  const [message] = bobGot;
  assert.equal(message.op, 1000);
  assert.equal(message.seq, 1, "the first message in bob's mailbox");
  assert.equal(message.fromSync, false, "live");
  assert.match(message.epoch, /^[A-Za-z0-9]{8}$/);
  const envelope = message.json();
  assert.equal(envelope.from, 101);
  assert.equal(envelope.to, 102);
  assert.equal(envelope.id, "a-1");
  assert.deepEqual(envelope.body, { text: "hi bob" });
  assert.equal(aliceGot[0].json().id, "a-1", "the sender's own copy, for its other devices");

  // Bob answers; a second send from alice with the same id is stored once.
  await bob.send({ to: 101, body: { text: "hi alice" } });
  await alice.send({ to: 102, body: { text: "hi bob" }, id: "a-1" });
  await alice.send({ to: 102, body: { text: "again" }, id: "a-2" });
  await eventually(() => bobGot.length >= 3, 5000, "bob's three messages");
  assert.deepEqual(
    bobGot.map((m) => [m.seq, m.json().id]),
    [
      [1, "a-1"],
      [2, `${bobGot[1].json().id}`],
      [3, "a-2"],
    ],
  );
  assert.equal(bobGot[1].json().from, 102);
  assert.deepEqual(bob.position, { epoch: message.epoch, last: 3 });
});

test("group: every member gets it; a non-member's and a missing group's sends reject with code and reason", async () => {
  const put = await rim.api("PUT", "/rim/v1/groups/9/members", { mids: [201, 202, 203] });
  assert.equal(put.status, 200, JSON.stringify(put.json));
  const [a, b, c] = await Promise.all([im(201), im(202), im(203)]);
  const got = [a, b, c].map((client) => collect(client, "message"));
  await a.send({ group: 9, op: 1001, body: { text: "hello all" } });
  await eventually(() => got.every((g) => g.length === 1), 5000, "each member's copy");
  for (const [message] of got) {
    assert.equal(message.op, 1001);
    assert.equal(message.json().group, 9);
    assert.equal(message.json().from, 201);
  }

  const outsider = await im(204);
  await assert.rejects(outsider.send({ group: 9, body: "let me in" }), (err) => {
    assert.ok(err instanceof RimError);
    assert.equal(err.code, 409);
    assert.ok(err.reason.length > 0, "a reason is given");
    assert.ok(err.id, "the id, to send again with");
    return true;
  });
  await assert.rejects(outsider.send({ group: 424242, body: "anyone?" }), (err) => err.code === 404);
  await assert.rejects(outsider.send({ to: 201, op: 5, body: "low op" }), (err) => err.code === 400);
  assert.equal(got[0].length, 1, "nothing else reached the group");
});

test("a muted sender's send rejects with 403 and the reason; unmuted it goes through", async () => {
  const sender = await im(301);
  await im(302);
  const mute = await rim.api("PUT", "/rim/v1/users/301/mute", { until: null, scope: "all" });
  assert.equal(mute.status, 200, JSON.stringify(mute.json));
  await assert.rejects(sender.send({ to: 302, body: { text: "can you hear me" } }), (err) => {
    assert.ok(err instanceof RimError);
    assert.equal(err.code, 403);
    assert.match(err.reason, /muted/);
    return true;
  });
  assert.equal((await rim.api("DELETE", "/rim/v1/users/301/mute")).status, 200);
  assert.equal((await sender.send({ to: 302, body: { text: "now?" } })).code, 0);
});

test("offline catch-up: a new client with the saved position syncs exactly what it missed, in order", async () => {
  const storage = mapStorage();
  const first = await im(401, { storage, ackInterval: 60_000 });
  const seen = collect(first, "message");
  const pushed = await rim.api("POST", "/goim/push/mids?operation=1000&mids=401&store=1", '{"n":1}');
  assert.equal(pushed.status, 200, JSON.stringify(pushed.json));
  await eventually(() => seen.length === 1, 5000, "the first message");
  const epoch = seen[0].epoch;
  assert.equal(storage.map.get("rim:sync:401"), JSON.stringify({ epoch, last: 1 }), "the position is saved");
  first.close();
  // close() sends the ack it still owed (the batch timer had no chance to).
  await eventually(async () => {
    const { devices } = (await rim.api("GET", "/rim/v1/users/401/cursor")).json;
    return devices[first.key]?.ack === 1;
  }, 5000, "the first device's ack");

  // While offline: two stored pushes and a chat message.
  await rim.api("POST", "/goim/push/mids?operation=1000&mids=401&store=1", '{"n":2}');
  await rim.api("POST", "/rim/v1/messages", { mids: [401], op: 1002, body: { n: 3 } });
  const friend = await im(402);
  await friend.send({ to: 401, body: { n: 4 } });

  // A later page load: a new client, the same storage.
  const second = connectClient(rim, { token: { mid: 401 }, im: true, storage });
  clients.push(second);
  const caught = collect(second, "message");
  const synced = await waitFor(second, "synced");
  assert.deepEqual(synced, { epoch, last: 4 });
  assert.deepEqual(
    caught.map((m) => [m.seq, m.op, m.fromSync]),
    [
      [2, 1000, true],
      [3, 1002, true],
      [4, 1000, true],
    ],
    "seq 1 is not delivered again; 2 to 4 once, in order",
  );
  assert.deepEqual(caught[0].json(), { n: 2 });
  assert.deepEqual(caught[2].json().body, { n: 4 });
  // Live again afterwards.
  await rim.api("POST", "/goim/push/mids?operation=1000&mids=401&store=1", '{"n":5}');
  await eventually(() => caught.length === 4, 5000, "the live message");
  assert.deepEqual([caught[3].seq, caught[3].fromSync], [5, false]);
  // The acks (batched) reach the cursor under the device's key.
  await eventually(async () => {
    const cursor = await rim.api("GET", "/rim/v1/users/401/cursor");
    return Object.values(cursor.json.devices ?? {}).some((d) => d.ack === 5);
  }, 5000, "the ack of seq 5 in the cursor");
});

test("messages trimmed while offline surface as an incomplete event, then the rest follows", async () => {
  const storage = mapStorage();
  const first = await im(501, { storage });
  const seen = collect(first, "message");
  await rim.api("POST", "/goim/push/mids?operation=1000&mids=501&store=1", '"one"');
  await eventually(() => seen.length === 1, 5000, "the first message");
  first.close();
  for (const n of ["two", "three", "four"]) {
    await rim.api("POST", "/goim/push/mids?operation=1000&mids=501&store=1", JSON.stringify(n));
  }
  const trim = await rim.api("DELETE", "/rim/v1/users/501/messages?upto=3");
  assert.equal(trim.status, 200, JSON.stringify(trim.json));

  const second = connectClient(rim, { token: { mid: 501 }, im: true, storage });
  clients.push(second);
  const caught = collect(second, "message");
  const synced = waitFor(second, "synced", (s) => s.last === 4);
  const lost = await waitFor(second, "incomplete");
  assert.equal(lost.previousLast, 1);
  assert.equal(lost.from, 4);
  assert.equal(lost.first, 4);
  assert.equal(lost.newEpoch, false);
  await synced;
  assert.deepEqual(caught.map((m) => [m.seq, m.json()]), [[4, "four"]]);
});

test("pushes: room pushes, keyed pushes by accepts, subscribe and the room's online count", async () => {
  const watcher = connectClient(rim, { token: { mid: 601, room_id: "live://77", accepts: [1000] } });
  const other = connectClient(rim, { token: { mid: 602, room_id: "live://77" } });
  clients.push(watcher, other);
  await Promise.all([connected(watcher), connected(other)]);
  const pushes = collect(watcher, "push");

  // Two connections in the room: op 3 says so.
  const online = await waitFor(watcher, "online", (o) => o.count === 2);
  assert.deepEqual(online, { room: "live://77", count: 2 });

  await rim.api("POST", "/goim/push/room?operation=1000&type=live&room=77", "to the room");
  // op 1005 is not accepted yet: only the later op 1000 push arrives.
  await rim.api("POST", "/goim/push/mids?operation=1005&mids=601", "filtered");
  await rim.api("POST", "/goim/push/mids?operation=1000&mids=601", "accepted");
  await eventually(() => pushes.length >= 2, 5000, "two pushes");
  assert.deepEqual(
    pushes.map((p) => [p.op, p.seq, p.text()]),
    [
      [1000, 0, "to the room"],
      [1000, 0, "accepted"],
    ],
  );
  await watcher.subscribe([1005]);
  assert.deepEqual(watcher.accepts.sort(), [1000, 1005]);
  await rim.api("POST", "/goim/push/mids?operation=1005&mids=601", "now accepted");
  await eventually(() => pushes.length === 3, 5000, "the subscribed op");
  assert.deepEqual([pushes[2].op, pushes[2].text()], [1005, "now accepted"]);
  await watcher.unsubscribe([1005]);
  await rim.api("POST", "/goim/push/mids?operation=1005&mids=601", "filtered again");
  await rim.api("POST", "/goim/push/mids?operation=1000&mids=601", "last");
  await eventually(() => pushes.length === 4, 5000, "the last push");
  assert.equal(pushes[3].text(), "last");

  // Changing rooms: pushes to the new room arrive, and the count follows.
  await other.changeRoom("live://78");
  assert.equal(other.room, "live://78");
  const otherPushes = collect(other, "push");
  await rim.api("POST", "/goim/push/room?operation=1000&type=live&room=78", "new room");
  await eventually(() => otherPushes.length === 1, 5000, "the new room's push");
  assert.equal(otherPushes[0].text(), "new room");
  await waitFor(watcher, "online", (o) => o.count === 1);
});

test("room chat: a room message from an IM client reaches the room live, not stored", async () => {
  const speaker = await im(701, { token: { mid: 701, room_id: "live://88" } });
  const listener = connectClient(rim, { token: { mid: 702, room_id: "live://88" } });
  clients.push(listener);
  await connected(listener);
  const heard = collect(listener, "push");
  await speaker.send({ room: "live://88", op: 1003, body: { text: "gg" } });
  await eventually(() => heard.length === 1, 5000, "the room message");
  assert.equal(heard[0].op, 1003);
  assert.equal(heard[0].seq, 0);
  assert.deepEqual(heard[0].json().body, { text: "gg" });
  assert.equal(heard[0].json().room, "live://88");
  // A room the session is not in is refused.
  await assert.rejects(speaker.send({ room: "live://89", body: "elsewhere" }), (err) => err.code === 403);
});

test("read marks: markRead on one device notifies the user's other device and moves the cursor", async () => {
  const phone = await im(801, { key: "phone-801" });
  const laptop = await im(801, { key: "laptop-801" });
  const got = collect(phone, "message");
  await rim.api("POST", "/goim/push/mids?operation=1000&mids=801&store=1", '"read me"');
  await rim.api("POST", "/goim/push/mids?operation=1000&mids=801&store=1", '"me too"');
  await eventually(() => got.length === 2 && laptop.position?.last === 2, 5000, "both devices hold 2");
  const notify = waitFor(laptop, "notify");
  const notifiedPhone = collect(phone, "notify");
  phone.markRead();
  assert.deepEqual(await notify, { kind: "read", seq: 2 });
  await eventually(async () => {
    const reply = await rim.api("GET", "/rim/v1/users/801/cursor");
    return reply.json.read === 2 && reply.json;
  }, 5000, "the cursor's read mark");
  // Each device's ack (batched by the client, written by rim every 500 ms) under its key.
  await eventually(async () => {
    const { devices } = (await rim.api("GET", "/rim/v1/users/801/cursor")).json;
    return devices["phone-801"]?.ack === 2 && devices["laptop-801"]?.ack === 2;
  }, 5000, "both devices' acks");
  assert.equal(notifiedPhone.length, 0, "the device that read is not notified");
});

test("concurrent stored pushes: every seq arrives once and in order, gaps filled by op 18", async () => {
  // Pushes accepted at the same moment may reach the connection out of order;
  // the client then sees a gap and syncs it (docs/protocol.md, "No duplicates").
  const client = await im(901);
  const got = collect(client, "message");
  const count = 60;
  const replies = await Promise.all(
    Array.from({ length: count }, (_, i) =>
      rim.api("POST", "/goim/push/mids?operation=1000&mids=901&store=1", JSON.stringify({ i })),
    ),
  );
  assert.ok(replies.every((r) => r.status === 200));
  await eventually(() => client.position?.last === count, 10_000, `seq ${count} held`);
  assert.deepEqual(
    got.map((m) => m.seq),
    Array.from({ length: count }, (_, i) => i + 1),
  );
  assert.deepEqual(got.map((m) => m.json().i).sort((a, b) => a - b), Array.from({ length: count }, (_, i) => i));
});
