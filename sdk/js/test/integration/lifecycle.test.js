// The connection lifecycle against real rim processes: a server that stops
// answering (SIGSTOP), a restart on the same data directory, refused and
// refreshed tokens, JWT mode, the frame-rate limit and the nodes API.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { createHmac } from "node:crypto";
import { createServer } from "node:net";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { WebSocket } from "ws";
import { RimClient, weightedNodes } from "../../dist/index.js";
import { collect, connectClient, connected, eventually, mapStorage, startRim, waitFor, within } from "./rim.js";

test("a frozen server is detected by heartbeats; a send made meanwhile is resent and stored once", async (t) => {
  const rim = await startRim();
  t.after(() => rim.stop());
  const sender = connectClient(rim, {
    token: { mid: 1101 },
    im: true,
    heartbeatInterval: 100,
    heartbeatTimeout: 300,
    connectTimeout: 300,
  });
  const receiver = connectClient(rim, { token: { mid: 1102 }, im: true });
  t.after(() => {
    sender.close();
    receiver.close();
  });
  await Promise.all([connected(sender), connected(receiver)]);
  const got = collect(receiver, "message");

  rim.pause();
  const sent = sender.send({ to: 1102, body: { text: "through the outage" }, id: "outage-1" });
  const lost = await waitFor(sender, "state", (s) => s.state === "reconnecting");
  assert.equal(lost.reason, "heartbeat timeout");
  // Attempts while frozen time out and back off.
  await waitFor(sender, "state", (s) => s.state === "reconnecting" && s.attempt >= 2);
  rim.resume();

  assert.deepEqual(await within(sent, 10_000, "the send made during the outage"), { id: "outage-1", code: 0 });
  await eventually(() => got.length >= 1, 10_000, "the message after the outage");
  const mailbox = await rim.api("GET", "/rim/v1/users/1102/messages?after=0");
  assert.deepEqual(
    mailbox.json.messages.map((m) => m.id),
    ["1101.outage-1"],
    "the frame written before the freeze and the resend are one message",
  );
  await eventually(() => got.length === 1 && receiver.state === "connected", 2000, "no second copy");
});

test("a restart on the same data: the client reconnects to the new address and goes on without a gap", async (t) => {
  let rim = await startRim();
  const dataDir = rim.dataDir;
  t.after(() => rim.stop());
  const storage = mapStorage();
  const client = new RimClient({
    url: () => rim.ws, // asked before each connect: the restarted rim has other ports
    token: { mid: 1201 },
    im: true,
    storage,
    WebSocket,
    heartbeatInterval: 200,
    ackInterval: 100,
    backoff: { base: 50, max: 300 },
  });
  t.after(() => client.close());
  const messages = collect(client, "message");
  const incomplete = collect(client, "incomplete");
  client.connect();
  await connected(client);
  await rim.api("POST", "/goim/push/mids?operation=1000&mids=1201&store=1", '"before"');
  await eventually(() => messages.length === 1, 5000, "the first message");

  await rim.stop({ keepData: true });
  await waitFor(client, "state", (s) => s.state === "reconnecting");
  rim = await startRim({ data: dataDir });
  await rim.api("POST", "/goim/push/mids?operation=1000&mids=1201&store=1", '"after"');
  await eventually(() => messages.length === 2, 10_000, "the message stored after the restart");
  assert.deepEqual(
    messages.map((m) => [m.seq, m.json()]),
    [
      [1, "before"],
      [2, "after"],
    ],
  );
  assert.equal(messages[1].epoch, messages[0].epoch, "the data directory keeps the epoch");
  assert.equal(incomplete.length, 0);
  assert.deepEqual(JSON.parse(storage.map.get("rim:sync:1201")), { epoch: messages[0].epoch, last: 2 });
});

test("a refused token: the client backs off, calls the token function again and gets in", async (t) => {
  const rim = await startRim();
  t.after(() => rim.stop());
  let calls = 0;
  const client = connectClient(rim, {
    // The first token is refused (mid must be a number), the next one is fine.
    token: () => (++calls === 1 ? { mid: "not a number" } : { mid: 1301 }),
  });
  t.after(() => client.close());
  const states = collect(client, "state");
  await connected(client);
  assert.equal(calls, 2);
  const refused = states.find((s) => s.state === "reconnecting");
  assert.equal(refused.reason, "auth_failed", "rim's close reason");
  assert.ok(refused.delay >= 25 && refused.delay <= 50, `backoff delay ${refused.delay}`);
});

test("JWT mode: a JWT string authenticates, with im and since beside it", async (t) => {
  const secret = "sdk-test-secret";
  const rim = await startRim({ config: `[logic.auth]\nmode = "jwt"\nsecret = "${secret}"\n` });
  t.after(() => rim.stop());
  const b64 = (value) => Buffer.from(JSON.stringify(value)).toString("base64url");
  const jwt = (claims) => {
    const unsigned = `${b64({ alg: "HS256", typ: "JWT" })}.${b64(claims)}`;
    return `${unsigned}.${createHmac("sha256", secret).update(unsigned).digest("base64url")}`;
  };
  const storage = mapStorage();
  const client = connectClient(rim, {
    token: () => jwt({ sub: "1401", exp: Math.floor(Date.now() / 1000) + 60 }),
    im: true,
    storage,
  });
  t.after(() => client.close());
  const messages = collect(client, "message");
  await waitFor(client, "synced");
  await rim.api("POST", "/goim/push/mids?operation=1000&mids=1401&store=1", '"for the jwt user"');
  await eventually(() => messages.length === 1, 5000, "the stored message");
  assert.deepEqual(messages[0].json(), "for the jwt user");
  assert.ok(storage.map.has("rim:sync:1401"), "the position is kept under the JWT's sub");
});

test("the client paces its frames under rim's per-second limit; without pacing rim closes", async (t) => {
  const rim = await startRim();
  t.after(() => rim.stop());
  const paced = connectClient(rim, { token: { mid: 1501 } });
  t.after(() => paced.close());
  await connected(paced);
  const states = collect(paced, "state");
  await Promise.all(Array.from({ length: 70 }, (_, i) => paced.subscribe([2000 + i])));
  assert.equal(paced.state, "connected");
  assert.deepEqual(states, [], "never dropped");

  const unpaced = connectClient(rim, { token: { mid: 1502 }, maxFramesPerSecond: 10_000 });
  t.after(() => unpaced.close());
  await connected(unpaced);
  const requests = Array.from({ length: 70 }, (_, i) => unpaced.subscribe([2000 + i]).catch((err) => err));
  await waitFor(unpaced, "state", (s) => s.state === "reconnecting");
  // rim's close frame may be lost in the burst (the client then sees 1006); its metrics say why.
  const metrics = (await rim.api("GET", "/metrics")).json;
  assert.match(metrics, /rim_comet_disconnects_total\{[^}]*reason="frame_rate"[^}]*\} [1-9]/);
  assert.ok((await Promise.all(requests)).some((r) => r instanceof Error), "requests on the lost connection reject");
});

/** A port that was free a moment ago (the nodes API needs the WebSocket port in its config). */
async function freePort() {
  const server = createServer();
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  const { port } = server.address();
  await new Promise((r) => server.close(r));
  return port;
}

test("weightedNodes builds the URL from /goim/nodes/weighted and the client connects through it", async (t) => {
  const port = await freePort();
  const rim = await startRim({
    config: `[logic.node]\ndefault_domain = "127.0.0.1"\nhost_domain = ""\nws_port = ${port}\n`,
    args: ["--ws", `127.0.0.1:${port}`, "--server-id", "127.0.0.1"],
  });
  t.after(() => rim.stop());
  const url = weightedNodes(rim.http, { secure: false });
  assert.equal(await url(), `ws://127.0.0.1:${port}/sub`);
  const client = connectClient(rim, { url, token: { mid: 1601 } });
  t.after(() => client.close());
  await connected(client);
});

test("with no WebSocket option the client uses the runtime's own (Node's, like a browser's)", async (t) => {
  const rim = await startRim();
  t.after(() => rim.stop());
  const script = fileURLToPath(new URL("./native-client.mjs", import.meta.url));
  const run = new Promise((resolve, reject) => {
    execFile(process.execPath, ["--experimental-websocket", script, rim.ws], { timeout: 20_000 }, (err, stdout, stderr) =>
      err ? reject(new Error(`${err.message}\n${stdout}\n${stderr}`)) : resolve(stdout),
    );
  });
  // The stored push waits in the mailbox if the child is not connected yet.
  await rim.api("POST", "/goim/push/mids?operation=1000&mids=1701&store=1", "native");
  const lines = (await run).trim().split("\n");
  assert.deepEqual(lines.filter((l) => l.startsWith("state")), ["state connecting", "state connected", "state closed"]);
  assert.ok(lines.includes("message 1 native"), lines.join("\n"));
});
