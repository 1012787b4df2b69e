// The demo chat (/demo/) in a real browser against a real rim standalone:
// two people (two browser contexts) chat one to one and in a group with
// delivered and read marks, history on another device, a dead network and
// the catch-up after it, a trimmed mailbox (the catch-up banner), the live
// room with its online count, the admin console's pushes and mutes reaching
// the demo, JWT sign-in, and a phone-sized screen.
import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import { afterEach, describe, test } from "node:test";
import { api, closeContexts, eventually, newPage, rim, startRim } from "./harness.mjs";

/** A user id (and group id) no other test uses. */
let nextId = 50_000 + (process.pid % 1000) * 100;
const id = () => ++nextId;

/** Heartbeats every 400 ms: a dead network is noticed within about a second. */
const HEARTBEAT = 400;

/** A fresh person (a browser context) on the demo, not signed in. */
async function openDemo(server, context = {}) {
  const ws = `ws://${server.ws[0]}/sub`;
  return newPage(server, `/demo/?ws=${encodeURIComponent(ws)}&heartbeat=${HEARTBEAT}`, context);
}

/** Signs `mid` in (trust mode) and waits until the page is online. */
async function signIn(server, mid, { room = "live://lobby", context } = {}) {
  const page = await openDemo(server, context);
  await page.getByLabel("User id").fill(String(mid));
  await page.getByLabel("Live room").fill(room);
  await page.getByRole("button", { name: "Sign in" }).click();
  await online(page);
  return page;
}

const online = (page) => page.locator('.status[data-state="online"]').waitFor({ timeout: 15_000 });

async function newChat(page, kind, who, people = "") {
  await page.getByRole("button", { name: "New chat" }).click();
  const dialog = page.getByRole("dialog", { name: "New chat" });
  await dialog.getByText(kind, { exact: true }).click();
  await dialog.getByLabel(kind === "Group" ? "Group id" : "User id").fill(String(who));
  if (people) await dialog.getByLabel("Add people (optional)").fill(people);
  await dialog.getByRole("button", { name: kind === "Group" ? "Join group" : "Open chat" }).click();
  await dialog.waitFor({ state: "hidden" });
}

async function send(page, text) {
  await page.getByLabel("Message", { exact: true }).fill(text);
  await page.getByRole("button", { name: "Send", exact: true }).click();
}

const conv = (page, id) => page.locator(`.conv[data-conv="${id}"]`);
const messages = (page) => page.locator(".messages .msg .text");
const mine = (page, text) => page.locator(".msg.mine").filter({ hasText: text });

/** The texts of the open conversation, polled until they equal `want`. */
async function expectTexts(page, want, ms = 15_000) {
  let last = [];
  await eventually(
    async () => {
      last = await messages(page).allTextContents();
      return JSON.stringify(last) === JSON.stringify(want);
    },
    ms,
    `the messages ${JSON.stringify(want)}`,
  ).catch((err) => {
    throw new Error(`${err.message}; shown: ${JSON.stringify(last)}`);
  });
}

/** Fails when the page logged errors (CSP violations included), except `allowed` ones. */
function assertClean(page, allowed = /^$/) {
  assert.deepEqual(
    page.errors.filter((e) => !allowed.test(e)),
    [],
    "the page logged errors",
  );
}

describe("demo chat", () => {
  afterEach(closeContexts);

  test("rim serves the demo with its SDK bundled, under the pages' policy", async () => {
    const server = await rim();
    const index = await api(server, "GET", "/demo/");
    assert.equal(index.status, 200);
    assert.match(index.headers.get("content-security-policy"), /connect-src 'self' ws: wss:/);
    assert.match(index.text, /<script src="app.js" defer><\/script>/);
    const script = await api(server, "GET", "/demo/app.js");
    assert.equal(script.status, 200);
    // The SDK's own error text: the client is in the bundle, not fetched.
    assert.match(script.text, /a send with this id is unanswered/);
    const page = await openDemo(server);
    await page.getByRole("heading", { name: "Sign in" }).waitFor();
    await page.getByLabel("User id").fill("not a number");
    await page.getByRole("button", { name: "Sign in" }).click();
    await page.getByText("The user id is a positive whole number.").waitFor();
    assertClean(page);
  });

  test("two people chat one to one: sent, delivered and read marks, and the history on another device", async () => {
    const server = await rim();
    const [a, b] = [id(), id()];
    const alice = await signIn(server, a);
    const bob = await signIn(server, b);

    await newChat(alice, "Person", b);
    await alice.getByRole("heading", { name: `User ${b}` }).waitFor();
    await send(alice, "hi bob");
    // Stored (op 5), then acked by Bob's device: delivered, not read.
    await mine(alice, "hi bob").and(alice.locator('[data-status="delivered"]')).waitFor({ timeout: 15_000 });
    await mine(alice, "hi bob").getByText("Delivered").waitFor();

    // Bob has not opened it: one unread.
    await conv(bob, `user:${a}`).getByLabel("1 unread").waitFor();
    assert.equal(await mine(alice, "hi bob").getAttribute("data-status"), "delivered");
    await conv(bob, `user:${a}`).click();
    await expectTexts(bob, ["hi bob"]);
    assert.equal(await conv(bob, `user:${a}`).locator(".unread").count(), 0);
    // Bob's page marks it read; Alice sees it from Bob's cursor.
    await mine(alice, "hi bob").and(alice.locator('[data-status="read"]')).waitFor({ timeout: 15_000 });
    await mine(alice, "hi bob").getByText("Read").waitFor();
    const cursor = await api(server, "GET", `/rim/v1/users/${b}/cursor`);
    assert.ok(cursor.json.read >= 1, `Bob's read mark: ${JSON.stringify(cursor.json)}`);

    await send(bob, "hi alice");
    await expectTexts(alice, ["hi bob", "hi alice"]);
    await expectTexts(bob, ["hi bob", "hi alice"]);
    assert.equal(await alice.locator(".msg:not(.mine)").filter({ hasText: "hi alice" }).count(), 1);

    // Bob on another device: the history comes over HTTP, each message once, nothing unread.
    const phone = await signIn(server, b);
    await conv(phone, `user:${a}`).waitFor();
    assert.equal(await conv(phone, `user:${a}`).locator(".unread").count(), 0);
    await conv(phone, `user:${a}`).click();
    await expectTexts(phone, ["hi bob", "hi alice"]);
    assert.equal(await mine(phone, "hi alice").count(), 1);
    for (const page of [alice, bob, phone]) assertClean(page);
  });

  test("a group: made from the demo, a message reaches the other member, with who sent it", async () => {
    const server = await rim();
    const [a, b, gid] = [id(), id(), id()];
    const alice = await signIn(server, a);
    const bob = await signIn(server, b);

    await newChat(alice, "Group", gid, String(b));
    await alice.getByRole("heading", { name: `Group ${gid}` }).waitFor();
    await alice.locator("[data-sub]").getByText(`2 members: you, ${b}`).waitFor();
    assert.deepEqual((await api(server, "GET", `/rim/v1/groups/${gid}/members`)).json.mids, [a, b]);
    await send(alice, "hello group");
    await mine(alice, "hello group").and(alice.locator('[data-status="sent"]')).waitFor();

    await conv(bob, `group:${gid}`).getByLabel("1 unread").waitFor({ timeout: 15_000 });
    await conv(bob, `group:${gid}`).click();
    await expectTexts(bob, ["hello group"]);
    await bob.locator(".msg").filter({ hasText: "hello group" }).getByText(`User ${a}`).waitFor();
    await send(bob, "hello alice");
    await expectTexts(alice, ["hello group", "hello alice"]);
    await alice.locator(".msg").filter({ hasText: "hello alice" }).getByText(`User ${b}`).waitFor();
    for (const page of [alice, bob]) assertClean(page);
  });

  test("offline: the missed messages show after the network is back, each once, in order", async () => {
    const server = await rim();
    const [a, b] = [id(), id()];
    const alice = await signIn(server, a);
    const bob = await signIn(server, b);
    await newChat(alice, "Person", b);
    await send(alice, "before");
    await conv(bob, `user:${a}`).click();
    await expectTexts(bob, ["before"]);
    assert.equal(await bob.locator(".app").getAttribute("data-connects"), "1");

    await bob.context().setOffline(true);
    // Chromium keeps the socket; the SDK's heartbeat timeout notices.
    await bob.locator('.status[data-state="offline"]').waitFor({ timeout: 15_000 });
    await bob.getByText("You're offline.").waitFor();
    const missed = ["one", "two", "three", "four", "five"];
    for (const text of missed) {
      await send(alice, text);
      await mine(alice, text).and(alice.locator('[data-status="sent"], [data-status="delivered"], [data-status="read"]')).waitFor();
    }
    // Stored for Bob, not shown: the page is offline.
    const cursor = await api(server, "GET", `/rim/v1/users/${b}/cursor`);
    assert.equal(cursor.json.top, 6);
    assert.deepEqual(await messages(bob).allTextContents(), ["before"]);

    await bob.context().setOffline(false);
    await online(bob);
    await expectTexts(bob, ["before", ...missed]);
    // They came with the sync of a second connection.
    assert.equal(await bob.locator(".app").getAttribute("data-connects"), "2");
    assert.deepEqual(await bob.locator(".messages .msg").evaluateAll((els) => els.map((e) => Number(e.dataset.seq))), [1, 2, 3, 4, 5, 6]);
    assertClean(alice);
    // Offline, Chromium logs the failed reconnects and requests.
    assertClean(bob, /ERR_INTERNET_DISCONNECTED|WebSocket connection to .* failed|Failed to load resource/);
  });

  test("a trimmed mailbox: the page says which messages are gone and shows the rest", async () => {
    const server = await rim();
    const [a, b] = [id(), id()];
    const alice = await signIn(server, a);
    const bob = await signIn(server, b);
    await newChat(alice, "Person", b);
    await send(alice, "kept before");
    await conv(bob, `user:${a}`).click();
    await expectTexts(bob, ["kept before"]);

    await bob.context().setOffline(true);
    await bob.locator('.status[data-state="offline"]').waitFor({ timeout: 15_000 });
    for (const text of ["lost 1", "lost 2", "still here"]) {
      await send(alice, text);
      await mine(alice, text).and(alice.locator('[data-status]:not([data-status="sending"])')).waitFor();
    }
    // The backend trims Bob's mailbox up to the second missed message (seqs 2 and 3).
    const trimmed = await api(server, "DELETE", `/rim/v1/users/${b}/messages?upto=3`);
    assert.equal(trimmed.status, 200, trimmed.text);
    await bob.context().setOffline(false);
    const banner = bob.getByRole("alert").filter({ hasText: "Not everything could be caught up." });
    await banner.getByText(/2 messages from while you were away are no longer stored on the server \(seqs 2–3\)/).waitFor({ timeout: 15_000 });
    await expectTexts(bob, ["kept before", "still here"]);
    await banner.getByRole("button", { name: "Dismiss" }).click();
    await banner.waitFor({ state: "hidden" });
    assertClean(bob, /ERR_INTERNET_DISCONNECTED|WebSocket connection to .* failed|Failed to load resource/);
  });

  test("the live room: its online count, and a message typed in one page appears in the other", async () => {
    const server = await rim();
    const room = `live://demo-${id()}`;
    const [a, b] = [id(), id()];
    const alice = await signIn(server, a, { room });
    const bob = await signIn(server, b, { room });
    for (const page of [alice, bob]) {
      await conv(page, "room").click();
      await page.getByRole("heading", { name: "Live room" }).waitFor();
      await page.locator(".thread-head[data-online='2']").waitFor({ timeout: 15_000 });
      await page.locator("[data-sub]").getByText(`${room} · 2 online`).waitFor();
    }
    await send(alice, "gg everyone");
    await bob.locator(".msg").filter({ hasText: "gg everyone" }).getByText(`User ${a}`).waitFor();
    await expectTexts(bob, ["gg everyone"]);
    // Alice's own copy (op 5, then the room's echo) shows once.
    await mine(alice, "gg everyone").and(alice.locator('[data-status="sent"]')).waitFor();
    await expectTexts(alice, ["gg everyone"]);

    // Bob leaves for another room: the count follows.
    await bob.getByLabel("Room", { exact: true }).fill(`${room}-b`);
    await bob.getByRole("button", { name: "Switch room" }).click();
    await bob.locator(".thread-head[data-online='1']").waitFor({ timeout: 15_000 });
    await alice.locator(".thread-head[data-online='1']").waitFor({ timeout: 15_000 });
    await send(alice, "anyone?");
    await mine(alice, "anyone?").and(alice.locator('[data-status="sent"]')).waitFor();
    // Bob's room now is another: what Alice says is not for him.
    await send(bob, "over here");
    await mine(bob, "over here").and(bob.locator('[data-status="sent"]')).waitFor();
    await expectTexts(bob, ["gg everyone", "over here"]);
    assert.equal(await alice.locator(".msg").filter({ hasText: "over here" }).count(), 0);
    for (const page of [alice, bob]) assertClean(page);
  });

  test("the admin console's push form reaches the demo: a stored push to the user, and a room push", async () => {
    const server = await rim();
    const b = id();
    const room = `live://news-${b}`;
    const bob = await signIn(server, b, { room });
    const admin = await newPage(server, "/admin/#/push");

    await admin.getByLabel("User ids").fill(String(b));
    await admin.getByLabel("Operation").fill("1000");
    await admin.getByLabel(/Store in the users' mailboxes/).check();
    await admin.getByLabel("Body").fill('{"text":"Your order has shipped"}');
    await admin.getByRole("button", { name: "Send push" }).click();
    await admin.getByText(/Stored for 1 user and sent/).first().waitFor();
    await conv(bob, "notices").getByLabel("1 unread").waitFor({ timeout: 15_000 });
    await conv(bob, "notices").click();
    await expectTexts(bob, ["Your order has shipped"]);
    assert.equal(await bob.locator(".msg").filter({ hasText: "Your order has shipped" }).getAttribute("data-seq"), "1");

    await admin.getByText("Room", { exact: true }).click();
    await admin.getByLabel("Room id").fill(room);
    await admin.getByLabel("Body").fill('{"text":"The stream starts in 5 minutes"}');
    await admin.getByRole("button", { name: "Send push" }).click();
    await expectTexts(bob, ["Your order has shipped", "The stream starts in 5 minutes"]);
    await bob.locator(".msg").filter({ hasText: "The stream starts" }).getByText("Live push (not stored)").waitFor();
    assertClean(bob);
    assertClean(admin);
  });

  test("muted in the admin console: the user's next send fails in the demo with the reason; unmuted, a retry goes through", async () => {
    const server = await rim();
    const [a, b] = [id(), id()];
    const alice = await signIn(server, a);
    const bob = await signIn(server, b);
    await newChat(bob, "Person", a);
    await send(bob, "first");
    await mine(bob, "first").and(bob.locator('[data-status="delivered"], [data-status="sent"]')).waitFor();

    const admin = await newPage(server, "/admin/#/mutes");
    await admin.getByLabel("User id").fill(String(b));
    await admin.getByLabel("Scope", { exact: true }).selectOption("all");
    await admin.getByLabel("For", { exact: true }).selectOption({ label: "Until lifted" });
    await admin.getByRole("button", { name: "Mute", exact: true }).click();
    await admin.getByText(`User ${b} is muted (all).`).waitFor();

    await send(bob, "can you hear me");
    const refused = mine(bob, "can you hear me");
    await refused.and(bob.locator('[data-status="failed"]')).waitFor({ timeout: 15_000 });
    await refused.getByRole("alert").getByText("Not sent: muted (all) (403)").waitFor();

    await admin.getByRole("button", { name: "Unmute", exact: true }).click();
    await admin.getByText(`Lifted all for user ${b}.`).waitFor();
    await refused.getByRole("button", { name: "Retry" }).click();
    await refused.and(bob.locator('[data-status="sent"], [data-status="delivered"]')).waitFor({ timeout: 15_000 });
    await conv(alice, `user:${b}`).click();
    await expectTexts(alice, ["first", "can you hear me"]);
    for (const page of [alice, bob, admin]) assertClean(page);
  });

  test("JWT mode: a signed token signs in; a bad one is refused on the sign-in screen", async () => {
    const secret = "demo-test-secret";
    const server = await startRim({ config: `[logic.auth]\nmode = "jwt"\nsecret = "${secret}"\n` });
    const b64 = (value) => Buffer.from(JSON.stringify(value)).toString("base64url");
    const jwt = (claims, key = secret) => {
      const head = `${b64({ alg: "HS256", typ: "JWT" })}.${b64(claims)}`;
      return `${head}.${createHmac("sha256", key).update(head).digest("base64url")}`;
    };
    const user = id();
    const exp = Math.floor(Date.now() / 1000) + 600;
    const page = await openDemo(server);
    await page.getByText("JWT", { exact: true }).click();
    await page.getByLabel("Token (JWT)").fill(jwt({ sub: String(user), exp }, "wrong-secret"));
    await page.getByRole("button", { name: "Sign in" }).click();
    await page.getByText(/The server refused the sign-in \(auth_failed\)/).waitFor({ timeout: 15_000 });

    await page.getByText("JWT", { exact: true }).click();
    await page.getByLabel("Token (JWT)").fill(jwt({ sub: String(user), exp }));
    await page.getByRole("button", { name: "Sign in" }).click();
    await online(page);
    await page.locator(".me-name").getByText(`User ${user}`).waitFor();
    await api(server, "POST", `/goim/push/mids?operation=1000&mids=${user}&store=1`, '{"text":"for the jwt user"}');
    await conv(page, "notices").click();
    await expectTexts(page, ["for the jwt user"]);
    // The JWT stays in this tab only.
    assert.equal(await page.evaluate(() => JSON.stringify(localStorage).includes("eyJ")), false);
    assertClean(page, /WebSocket connection to .* failed|auth_failed/);
  });

  test("fits a phone: the list, then the conversation with a way back", async () => {
    const server = await rim();
    const [a, b] = [id(), id()];
    const phone = { viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true };
    const alice = await signIn(server, a, { context: phone });
    const bob = await signIn(server, b);
    await newChat(bob, "Person", a);
    await send(bob, "on your phone?");

    await conv(alice, `user:${b}`).click();
    await expectTexts(alice, ["on your phone?"]);
    assert.equal(await alice.locator(".sidebar").isVisible(), false);
    await send(alice, "yes");
    await expectTexts(bob, ["on your phone?", "yes"]);
    const overflow = await alice.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 0, `the page is ${overflow}px wider than the screen`);
    await alice.getByRole("button", { name: "Back to conversations" }).click();
    await conv(alice, `user:${b}`).waitFor();
    assert.equal(await alice.locator(".thread").isVisible(), false);
    for (const page of [alice, bob]) assertClean(page);
  });
});
