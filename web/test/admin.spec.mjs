// The admin console (/admin/) in a real browser against a real rim
// standalone: the pages as rim serves them, the live overview, the push
// form reaching a client, the mailbox viewer, mutes, groups, the token
// prompt, the API view and a phone-sized screen.
import assert from "node:assert/strict";
import { readdir, readFile } from "node:fs/promises";
import { afterEach, describe, test } from "node:test";
import { GoimClient } from "./goim.mjs";
import { api, closeContexts, eventually, newPage, rim, startRim } from "./harness.mjs";

/** A user id no other test uses. */
let nextMid = 7000 + (process.pid % 1000) * 100;
const mid = () => ++nextMid;

/** Fails when the page logged errors (CSP violations included), except `allowed` ones. */
function assertClean(page, allowed = /^$/) {
  const errors = page.errors.filter((e) => !allowed.test(e));
  assert.deepEqual(errors, [], "the page logged errors");
}

async function openView(page, name) {
  await page.getByRole("navigation", { name: "Sections" }).getByRole("link", { name, exact: true }).click();
  await page.getByRole("heading", { level: 1, name, exact: true }).waitFor();
}

/** Where a view shows what its last action did. */
const outcome = (page) => page.getByRole("status");

const text = (locator) => locator.textContent().then((t) => (t ?? "").trim());

describe("admin console", () => {
  afterEach(closeContexts);

  test("rim serves the pages from the binary, with content types, an index and 404s", async () => {
    const server = await rim();
    const index = await api(server, "GET", "/admin/");
    assert.equal(index.status, 200);
    assert.equal(index.headers.get("content-type"), "text/html; charset=utf-8");
    assert.match(index.headers.get("content-security-policy"), /default-src 'self'/);
    assert.match(index.text, /<script src="app.js" defer><\/script>/);
    const script = await api(server, "GET", "/admin/app.js");
    assert.equal(script.status, 200);
    assert.equal(script.headers.get("content-type"), "text/javascript; charset=utf-8");
    const style = await api(server, "GET", "/admin/app.css");
    assert.equal(style.headers.get("content-type"), "text/css; charset=utf-8");
    assert.equal((await api(server, "GET", "/admin/missing.js")).status, 404);
    const bare = await fetch(`${server.url}/admin`, { redirect: "manual" });
    assert.equal(bare.status, 308);
    assert.equal(bare.headers.get("location"), "admin/");
    const demo = await api(server, "GET", "/demo/");
    assert.equal(demo.status, 200);
    assert.match(demo.text, /demo chat/i);
    // The binary serves exactly what web/dist holds (a stale rim binary fails here).
    const dist = new URL("../dist/", import.meta.url);
    for (const page of ["admin", "demo"]) {
      for (const file of await readdir(new URL(`${page}/`, dist))) {
        const served = await fetch(`${server.url}/${page}/${file}`);
        assert.equal(served.status, 200, `/${page}/${file}`);
        const want = await readFile(new URL(`${page}/${file}`, dist));
        assert.ok(Buffer.from(await served.arrayBuffer()).equals(want), `/${page}/${file} is not web/dist/${page}/${file}`);
      }
    }
  });

  test("the overview shows a connected client and its room live", async () => {
    const server = await rim();
    const page = await newPage(server);
    const room = `live://stats-${mid()}`;
    const client = await GoimClient.connect(server.tcp[0], { mid: mid(), room_id: room, accepts: [1000] });
    try {
      const row = page.getByRole("row").filter({ hasText: room });
      await row.waitFor({ timeout: 15_000 });
      assert.equal(await text(row.getByRole("cell").nth(1)), "1");
      await eventually(
        async () => Number(await text(page.locator('[data-stat="connections"]'))) >= 1,
        15_000,
        "the connections card counting the client",
      );
      assert.ok(Number(await text(page.locator('[data-stat="rooms"]'))) >= 1);
      assert.ok(Number(await text(page.locator('[data-stat="comets"]'))) >= 1);
      // The comet's own gauge, charted from /metrics.
      await eventually(
        async () => Number(await text(page.locator('[data-chart="connections"] [data-value]'))) >= 1,
        15_000,
        "the connections chart",
      );
      const comet = page.locator('[data-section="comets"]').getByRole("row").filter({ hasText: server.server_id });
      await comet.waitFor();
    } finally {
      client.close();
    }
    // Live: the room goes once its only member left.
    await page.getByRole("row").filter({ hasText: room }).waitFor({ state: "detached", timeout: 15_000 });
    assertClean(page);
  });

  test("the push form reaches a connected client, by user and by room", async () => {
    const server = await rim();
    const user = mid();
    const room = `live://push-${user}`;
    const client = await GoimClient.connect(server.tcp[0], { mid: user, room_id: room, accepts: [1000] });
    const page = await newPage(server, "/admin/#/push");
    try {
      await page.getByLabel("User ids").fill(String(user));
      await page.getByLabel("Operation").fill("1000");
      await page.getByLabel("Body").fill('{"text":"hello from the console"}');
      await page.getByRole("button", { name: "Send push" }).click();
      await outcome(page).getByText("Queued for delivery.").waitFor();
      const pushed = await client.next((f) => f.op === 1000, 10_000, "the push to the user");
      assert.equal(pushed.body.toString(), '{"text":"hello from the console"}');

      await page.getByText("Room", { exact: true }).click();
      await page.getByLabel("Room id").fill(room);
      await page.getByLabel("Body").fill("room news");
      await page.getByRole("button", { name: "Send push" }).click();
      const roomPush = await client.next((f) => f.op === 1000, 10_000, "the push to the room");
      assert.equal(roomPush.body.toString(), "room news");
      // Both are listed as sent from this tab.
      const sent = page.locator('[data-section="sent"]');
      await sent.getByRole("row").filter({ hasText: `room ${room}` }).waitFor();
      await sent.getByRole("row").filter({ hasText: `mids ${user}` }).waitFor();

      // A bad request shows the server's message.
      await page.getByLabel("Room id").fill("no-type-here");
      await page.getByRole("button", { name: "Send push" }).click();
      await outcome(page).getByText(/write it as type:\/\/id/).waitFor();
    } finally {
      client.close();
    }
    assertClean(page);
  });

  test("a push stored from the console shows in the mailbox viewer with the device's ack", async () => {
    const server = await rim();
    const user = mid();
    const page = await newPage(server, "/admin/#/push");
    await page.getByLabel("User ids").fill(String(user));
    await page.getByLabel(/Store in the users' mailboxes/).check();
    await page.getByLabel("Message id").fill(`console-${user}`);
    await page.getByLabel("Body").fill('{"text":"kept for later"}');
    await page.getByRole("button", { name: "Send push" }).click();
    await outcome(page).getByText(/Stored for 1 user and sent/).waitFor();
    const stored = await api(server, "GET", `/rim/v1/users/${user}/messages?after=0`);
    assert.equal(stored.status, 200);
    assert.deepEqual(
      stored.json.messages.map((m) => [m.seq, m.id, m.body]),
      [[1, `console-${user}`, { text: "kept for later" }]],
    );

    // An IM client syncs it and acks it: the cursor shows the device.
    const key = `device-${user}`;
    const client = await GoimClient.connect(server.tcp[0], { mid: user, key, im: true, since: { seq: 0 } });
    try {
      const message = await client.next((f) => f.op === 1000, 10_000, "the synced message");
      assert.equal(message.seq, 1);
      client.send(21, JSON.stringify({ seq: 1 }));

      await openView(page, "Mailbox");
      await page.getByLabel("User id").fill(String(user));
      await page.getByRole("button", { name: "Open mailbox" }).click();
      const row = page.locator('[data-testid="messages"]').getByRole("row").filter({ hasText: "kept for later" });
      await row.waitFor();
      assert.equal(await text(row.getByRole("cell").first()), "1");
      assert.match(await text(row), new RegExp(`console-${user}`));
      assert.equal(new URL(page.url()).hash, `#/mailbox/${user}`);
      // Acks reach the store every 500 ms: reopen until the device shows.
      await eventually(
        async () => {
          await page.getByRole("button", { name: "Open mailbox" }).click();
          const device = page.locator('[data-section="cursor"]').getByRole("row").filter({ hasText: key });
          return (await device.count()) === 1 && (await text(device.getByRole("cell").nth(1))) === "1";
        },
        10_000,
        "the device's ack in the cursor",
      );
    } finally {
      client.close();
    }
    assertClean(page);
  });

  test("muting a user in the console refuses their next message with the reason, unmuting lets it through", async () => {
    const server = await rim();
    const user = mid();
    const peer = mid();
    const client = await GoimClient.connect(server.tcp[0], { mid: user, im: true });
    const page = await newPage(server, "/admin/#/mutes");
    try {
      const before = await client.sendMessage({ to: peer, op: 1000, id: `m1-${user}`, body: { text: "before" } });
      assert.equal(before.code, 0);

      await page.getByLabel("User id").fill(String(user));
      await page.getByLabel("Scope", { exact: true }).selectOption("all");
      await page.getByLabel("For", { exact: true }).selectOption({ label: "Until lifted" });
      await page.getByRole("button", { name: "Mute", exact: true }).click();
      await outcome(page).getByText(`User ${user} is muted (all).`).waitFor();
      await page.locator('[data-section="mutes"]').getByRole("row").filter({ hasText: "all" }).waitFor();
      const listed = await api(server, "GET", `/rim/v1/users/${user}/mute`);
      assert.deepEqual(listed.json, { mid: user, mutes: [{ scope: "all", until: null }] });

      const refused = await client.sendMessage({ to: peer, op: 1000, id: `m2-${user}`, body: { text: "muted?" } });
      assert.equal(refused.code, 403);
      assert.match(refused.reason, /muted/);

      await page.getByRole("button", { name: "Unmute", exact: true }).click();
      await outcome(page).getByText(`Lifted all for user ${user}.`).waitFor();
      await page.getByText("Not muted.").waitFor();
      assert.deepEqual((await api(server, "GET", `/rim/v1/users/${user}/mute`)).json.mutes, []);
      const after = await client.sendMessage({ to: peer, op: 1000, id: `m3-${user}`, body: { text: "after" } });
      assert.equal(after.code, 0);

      // A mute for a while, in one room, shows its end.
      await page.getByLabel("Scope", { exact: true }).selectOption("room");
      await page.getByLabel("Group or room").fill("live://quiet");
      await page.getByLabel("For", { exact: true }).selectOption({ label: "1 hour" });
      await page.getByRole("button", { name: "Mute", exact: true }).click();
      await outcome(page).getByText(/is muted \(room:live:\/\/quiet\) until/).waitFor();
      const timed = (await api(server, "GET", `/rim/v1/users/${user}/mute`)).json.mutes;
      assert.equal(timed.length, 1);
      assert.equal(timed[0].scope, "room:live://quiet");
      const left = Date.parse(timed[0].until) - Date.now();
      assert.ok(left > 55 * 60_000 && left <= 3600_000, `the mute ends in about an hour, not in ${left} ms`);
    } finally {
      client.close();
    }
    assertClean(page);
  });

  test("group membership: add, list and remove members", async () => {
    const server = await rim();
    const gid = mid();
    const [a, b] = [mid(), mid()];
    const page = await newPage(server, `/admin/#/groups/${gid}`);
    await page.getByText(/the group does not exist until someone is added/).waitFor();
    await page.getByLabel("User ids").fill(`${a}, ${b}`);
    await page.getByRole("button", { name: "Add", exact: true }).click();
    await page.getByText(`Group ${gid}: 2 members`).waitFor();
    assert.deepEqual((await api(server, "GET", `/rim/v1/groups/${gid}/members`)).json.mids, [a, b]);

    await page.getByRole("button", { name: `Remove ${a}` }).click();
    await page.getByText(`Group ${gid}: 1 member`, { exact: true }).waitFor();
    assert.deepEqual((await api(server, "GET", `/rim/v1/groups/${gid}/members`)).json.mids, [b]);

    // A message to the group lands in the member's mailbox.
    await page.getByLabel("Body").fill('{"text":"to the group"}');
    await page.getByRole("button", { name: "Send to group" }).click();
    await outcome(page).getByText(/Stored for 1 member and sent/).waitFor();
    const mailbox = await api(server, "GET", `/rim/v1/users/${b}/messages?after=0`);
    assert.deepEqual(mailbox.json.messages.map((m) => m.body), [{ text: "to the group" }]);
    // 404 while the group has no members is not an error for the console.
    assertClean(page, /status of 404/);
  });

  test("asks for the API token when one is configured, and keeps it in the tab only", async () => {
    const token = "s3cret-console-token";
    const server = await startRim({ logicConfig: `api.tokens = ["${token}"]` });
    // The pages themselves need no token.
    assert.equal((await api(server, "GET", "/admin/")).status, 200);
    const user = mid();
    const client = await GoimClient.connect(server.tcp[0], { mid: user, accepts: [1000] });
    const page = await newPage(server, "/admin/#/push");
    try {
      await page.getByLabel("User ids").fill(String(user));
      await page.getByLabel("Body").fill("with a token");
      await page.getByRole("button", { name: "Send push" }).click();
      const dialog = page.getByRole("dialog", { name: "API token" });
      await dialog.getByText(/missing bearer token/).waitFor();
      // A wrong token is refused, and asked for again.
      await dialog.getByLabel("Token").fill("wrong");
      await dialog.getByRole("button", { name: "Use token" }).click();
      await dialog.getByText(/bearer token not accepted/).waitFor();
      await dialog.getByLabel("Token").fill(token);
      await dialog.getByRole("button", { name: "Use token" }).click();
      await outcome(page).getByText("Queued for delivery.").waitFor();
      const pushed = await client.next((f) => f.op === 1000, 10_000, "the push");
      assert.equal(pushed.body.toString(), "with a token");

      const storage = await page.evaluate(() => ({
        session: Object.values(sessionStorage),
        local: Object.keys(localStorage).length,
        cookies: document.cookie,
      }));
      assert.deepEqual(storage, { session: [token], local: 0, cookies: "" });
      // Another tab (a fresh context) does not have it.
      const other = await newPage(server, "/admin/#/push");
      assert.deepEqual(await other.evaluate(() => Object.keys(sessionStorage)), []);
      await other.context().close();

      // Forgetting it: the next push asks again; cancelling says a token is needed.
      await page.getByRole("button", { name: "Forget token" }).click();
      await page.getByRole("button", { name: "Send push" }).click();
      await dialog.getByRole("button", { name: "Cancel" }).click();
      await outcome(page).getByText(/401: missing bearer token/).waitFor();
    } finally {
      client.close();
    }
    assertClean(page, /status of 40[13]/);
  });

  test("the API view lists the operations of /openapi.json, or says the server has none", async () => {
    const server = await rim();
    const doc = await api(server, "GET", "/openapi.json");
    const page = await newPage(server, "/admin/#/api");
    if (doc.status === 404) {
      await page.getByText(/does not publish an API description/).waitFor();
      assertClean(page, /status of 404/);
      return;
    }
    assert.equal(doc.status, 200);
    const methods = ["get", "put", "post", "delete", "patch", "head", "options"];
    const count = Object.values(doc.json.paths).reduce((n, item) => n + methods.filter((m) => item[m]).length, 0);
    await page.locator("[data-operation]").first().waitFor();
    assert.equal(await page.locator("[data-operation]").count(), count);
    await page.locator('[data-operation="POST /goim/push/mids"]').waitFor();
    await page.getByLabel("Filter operations").fill("mute");
    assert.ok((await page.locator("[data-operation]").count()) < count);
    assertClean(page);
  });

  test("fits a phone screen", async () => {
    const server = await rim();
    const page = await newPage(server, "/admin/", {
      viewport: { width: 390, height: 844 },
      deviceScaleFactor: 2,
      isMobile: true,
      hasTouch: true,
    });
    await page.locator('[data-stat="comets"]').filter({ hasText: /^[1-9]/ }).waitFor({ timeout: 15_000 });
    for (const view of ["Overview", "Push", "Mailbox", "Mutes", "Groups", "API"]) {
      await openView(page, view);
      const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
      assert.ok(overflow <= 0, `${view}: the page is ${overflow}px wider than the screen`);
    }
    assertClean(page, /status of 404/);
  });
});
