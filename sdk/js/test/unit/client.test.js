// The client against a scripted goim server (the ws package's server): ops
// 24–27 (join and leave rooms, issue 14), which a rim without them echoes,
// and the client's own rules that need exact control of the server's answers.
// The rest of the client is tested against a real rim (test/integration/).
import assert from "node:assert/strict";
import { test } from "node:test";
import { WebSocket, WebSocketServer } from "ws";
import { decodeFrames, encodeFrame, Op, RimClient, RimError } from "../../dist/index.js";

const text = (bytes) => new TextDecoder().decode(bytes);

/** A goim server that answers auth and heartbeats, and hands every other frame to `onFrame`. */
async function scriptedServer(onFrame = () => {}) {
  const server = new WebSocketServer({ host: "127.0.0.1", port: 0 });
  await new Promise((resolve) => server.once("listening", resolve));
  const seen = { auths: [], frames: [], sockets: [] };
  server.on("connection", (socket) => {
    seen.sockets.push(socket);
    socket.on("message", (data) => {
      for (const frame of decodeFrames(new Uint8Array(data))) {
        const reply = (op, body = "", seq = frame.seq) => socket.send(encodeFrame(op, seq, body));
        if (frame.op === Op.Auth) {
          seen.auths.push(JSON.parse(text(frame.body)));
          reply(Op.AuthReply);
        } else if (frame.op === Op.Heartbeat) {
          const count = new Uint8Array(4);
          new DataView(count.buffer).setInt32(0, 3);
          reply(Op.HeartbeatReply, count);
        } else {
          seen.frames.push({ op: frame.op, seq: frame.seq, body: text(frame.body) });
          onFrame(frame, reply, socket);
        }
      }
    });
  });
  return {
    url: `ws://127.0.0.1:${server.address().port}/sub`,
    seen,
    close: () => new Promise((resolve) => {
      for (const socket of server.clients) socket.terminate();
      server.close(resolve);
    }),
  };
}

function client(url, extra = {}) {
  return new RimClient({
    url,
    token: { mid: 7, room_id: "live://1", accepts: [1000] },
    WebSocket,
    backoff: { base: 10, max: 50 },
    ...extra,
  });
}

const until = (emitter, event, predicate = () => true) =>
  new Promise((resolve) => {
    const off = emitter.on(event, (payload) => {
      if (predicate(payload)) {
        off();
        resolve(payload);
      }
    });
  });

test("joinRoom and leaveRoom send ops 24 and 26 with the room id and settle on 25 and 27", async () => {
  const server = await scriptedServer((frame, reply) => {
    const room = text(frame.body);
    if (frame.op === Op.JoinRoom) {
      reply(Op.JoinRoomReply, room === "live://full" ? JSON.stringify({ code: 429, reason: "too many rooms" }) : room);
    }
    if (frame.op === Op.LeaveRoom) reply(Op.LeaveRoomReply, room);
  });
  const rim = client(server.url);
  rim.connect();
  await until(rim, "state", (s) => s.state === "connected");
  await rim.joinRoom("live://2");
  await rim.joinRoom("chat://3");
  assert.deepEqual(rim.rooms, ["live://2", "chat://3"]);
  await assert.rejects(rim.joinRoom("live://full"), (err) => {
    assert.ok(err instanceof RimError);
    assert.equal(err.code, 429);
    assert.equal(err.reason, "too many rooms");
    return true;
  });
  assert.deepEqual(rim.rooms, ["live://2", "chat://3"], "a refused room is not kept");
  await rim.leaveRoom("live://2");
  assert.deepEqual(rim.rooms, ["chat://3"]);
  assert.deepEqual(
    server.seen.frames.map((f) => [f.op, f.body]),
    [
      [Op.JoinRoom, "live://2"],
      [Op.JoinRoom, "chat://3"],
      [Op.JoinRoom, "live://full"],
      [Op.LeaveRoom, "live://2"],
    ],
  );
  assert.equal(new Set(server.seen.frames.map((f) => f.seq)).size, 4, "each request has its own header seq");

  // After a reconnect the joined rooms are joined again.
  server.seen.frames.length = 0;
  server.seen.sockets.at(-1).terminate();
  await until(rim, "state", (s) => s.state === "reconnecting");
  await until(rim, "state", (s) => s.state === "connected");
  const deadline = Date.now() + 5000;
  while (server.seen.frames.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  assert.deepEqual(server.seen.frames.map((f) => [f.op, f.body]), [[Op.JoinRoom, "chat://3"]]);
  rim.close();
  await server.close();
});

test("a server without ops 24–27 echoes op 24: the join rejects as unsupported", async () => {
  // rim's rule for unknown ops: answered with the same op and seq, empty body.
  const server = await scriptedServer((frame, reply) => reply(frame.op));
  const rim = client(server.url);
  rim.connect();
  await until(rim, "state", (s) => s.state === "connected");
  await assert.rejects(rim.joinRoom("live://2"), /op 24 is not supported/);
  await assert.rejects(rim.leaveRoom("live://2"), /op 26 is not supported/);
  rim.close();
  await server.close();
});

test("requests made while disconnected apply at connect: token room, accepts, joins", async () => {
  const server = await scriptedServer((frame, reply) => reply(frame.op + 1, text(frame.body)));
  const rim = client(server.url);
  await rim.changeRoom("live://9");
  await rim.subscribe([1001, 1002]);
  await rim.unsubscribe([1000]);
  await rim.joinRoom("chat://4");
  rim.connect();
  await until(rim, "state", (s) => s.state === "connected");
  const [auth] = server.seen.auths;
  assert.equal(auth.room_id, "live://9");
  assert.deepEqual(auth.accepts.sort(), [1001, 1002]);
  assert.equal(auth.mid, 7);
  assert.equal(auth.im, undefined, "not an IM client");
  assert.equal(auth.key, "", "non-IM clients let the server pick a key");
  const deadline = Date.now() + 5000;
  while (server.seen.frames.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  assert.deepEqual(server.seen.frames.map((f) => [f.op, f.body]), [[Op.JoinRoom, "chat://4"]]);
  rim.close();
  await server.close();
});

test("a JWT token travels inside goim's JSON token with the client's room, key and since", async () => {
  const server = await scriptedServer();
  const claims = Buffer.from(JSON.stringify({ sub: "42", exp: 9999999999 })).toString("base64url");
  const jwt = `eyJhbGciOiJIUzI1NiJ9.${claims}.c2ln`;
  const storage = new Map([["rim:sync:42", JSON.stringify({ epoch: "abcdEFGH", last: 17 })]]);
  let calls = 0;
  const rim = client(server.url, {
    token: () => {
      calls += 1;
      return jwt;
    },
    im: true,
    room: "live://5",
    storage: { getItem: (k) => storage.get(k) ?? null, setItem: (k, v) => storage.set(k, v) },
  });
  rim.connect();
  await until(rim, "state", (s) => s.state === "connected");
  const [auth] = server.seen.auths;
  assert.equal(auth.token, jwt);
  assert.equal(auth.room_id, "live://5");
  assert.equal(auth.im, true);
  assert.deepEqual(auth.since, { seq: 17, epoch: "abcdEFGH" }, "the position saved for the JWT's sub");
  assert.match(auth.key, /^[0-9a-f]{16}$/, "an IM client keeps one device key");
  server.seen.sockets[0].terminate();
  await until(rim, "state", (s) => s.state === "connected");
  assert.equal(calls, 2, "the token callback runs before every connect");
  assert.equal(server.seen.auths[1].key, auth.key, "the same key after a reconnect");
  rim.close();
  await server.close();
});

test("a heartbeat left unanswered drops the connection and reconnects", async () => {
  const server = await scriptedServer();
  const rim = client(server.url, { heartbeatInterval: 50, heartbeatTimeout: 100 });
  const online = until(rim, "online");
  rim.connect();
  assert.deepEqual(await online, { room: "live://1", count: 3 });
  const first = server.seen.sockets[0];
  first.removeAllListeners("message"); // the first connection goes silent
  const lost = await until(rim, "state", (s) => s.state === "reconnecting");
  assert.equal(lost.reason, "heartbeat timeout");
  await until(rim, "state", (s) => s.state === "connected");
  assert.equal(server.seen.auths.length, 2);
  rim.close();
  await server.close();
});

test("close() rejects unanswered sends and stops reconnecting", async () => {
  const server = await scriptedServer(); // never answers op 4
  const rim = client(server.url, { im: true });
  const states = [];
  rim.on("state", (s) => states.push(s.state));
  rim.connect();
  await until(rim, "state", (s) => s.state === "connected");
  const sent = rim.send({ to: 8, body: { text: "hi" }, id: "m-1" });
  const deadline = Date.now() + 5000;
  while (!server.seen.frames.some((f) => f.op === Op.SendMsg) && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 10));
  }
  const op4 = server.seen.frames.find((f) => f.op === Op.SendMsg);
  assert.deepEqual(JSON.parse(op4.body), { to: 8, op: 1000, id: "m-1", body: { text: "hi" } });
  rim.close();
  await assert.rejects(sent, (err) => err instanceof RimError && err.id === "m-1" && /closed/.test(err.reason));
  assert.deepEqual(states, ["connecting", "connected", "closed"]);
  await server.close();
});

test("without a WebSocket implementation the constructor says what to pass", () => {
  const saved = globalThis.WebSocket;
  try {
    delete globalThis.WebSocket;
    assert.throws(() => new RimClient({ url: "ws://x/sub", token: {} }), /pass options.WebSocket/);
  } finally {
    if (saved) globalThis.WebSocket = saved;
  }
});
