// Takes the README's screenshots of the demo chat (docs/img/demo-*.png): a
// rim standalone where Alice (123, a desktop browser) and Bob (456, a
// phone) chat one to one and in a group with Carol (789, a goim client
// over TCP), a live room with a few more people (goim clients too), and a
// stored push.
//
//   npm run screenshots:demo            (after cargo build --bin rim)
//
// Not part of the suite: it writes into the repository.
import { mkdir } from "node:fs/promises";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { GoimClient } from "./goim.mjs";
import { api, newPage, shutdown, startRim } from "./harness.mjs";

const out = resolve(fileURLToPath(new URL("../../docs/img", import.meta.url)));
const room = "live://lobby";

const server = await startRim();
const clients = [];
try {
  await mkdir(out, { recursive: true });
  const ws = encodeURIComponent(`ws://${server.ws[0]}/sub`);
  const signIn = async (mid, context) => {
    const page = await newPage(server, `/demo/?ws=${ws}&heartbeat=1000`, context);
    await page.getByLabel("User id").fill(String(mid));
    await page.getByLabel("Live room").fill(room);
    await page.getByRole("button", { name: "Sign in" }).click();
    await page.locator('.status[data-state="online"]').waitFor();
    return page;
  };
  const send = async (page, text) => {
    await page.getByLabel("Message", { exact: true }).fill(text);
    await page.getByRole("button", { name: "Send", exact: true }).click();
    await page.locator(".msg.mine").filter({ hasText: text }).and(page.locator('[data-status]:not([data-status="sending"])')).waitFor();
  };
  const open = (page, conv) => page.locator(`.conv[data-conv="${conv}"]`).click();

  // Carol, and a few people in the live room.
  const carol = await GoimClient.connect(server.tcp[0], { mid: 789, im: true, room_id: room });
  clients.push(carol);
  for (let mid = 2001; mid <= 2009; mid++) clients.push(await GoimClient.connect(server.tcp[0], { mid, im: true, room_id: room }));

  await api(server, "PUT", "/rim/v1/groups/9/members", { mids: [123, 456, 789] });
  await api(server, "POST", "/goim/push/mids?operation=1000&mids=123&mids=456&store=1&id=order-1041", '{"text":"Your order #1041 has shipped: it arrives on Friday."}');

  const alice = await signIn(123, { viewport: { width: 1280, height: 800 } });
  const bob = await signIn(456, { viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true });

  // Both have read the notification (the read mark is one position per
  // mailbox: it stops at the first message not seen, whatever its conversation).
  await open(alice, "notices");
  await open(bob, "notices");
  await bob.getByRole("button", { name: "Back to conversations" }).click();

  // The group: Carol starts, Alice and Bob answer.
  await carol.sendMessage({ group: 9, op: 1000, id: "c-1", body: { text: "Who's in for the lake on Saturday?" } });
  await open(alice, "group:9");
  await send(alice, "Me! I can bring the kayak.");
  await open(bob, "group:9");
  await send(bob, "Count me in. Leaving at 9?");
  await carol.sendMessage({ group: 9, op: 1000, id: "c-2", body: { text: "9 works. See you at the station." } });

  // One to one: Alice and Bob.
  await bob.getByRole("button", { name: "Back to conversations" }).click();
  await open(alice, "user:456").catch(async () => {
    await alice.getByRole("button", { name: "New chat" }).click();
    await alice.getByRole("dialog").getByLabel("User id").fill("456");
    await alice.getByRole("dialog").getByRole("button", { name: "Open chat" }).click();
  });
  await send(alice, "Did you get the tickets?");
  await open(bob, "user:123");
  await send(bob, "Yes, two for the 9:10 train.");
  await send(bob, "Platform 4.");
  await send(alice, "Perfect, thanks!");
  await alice.locator(".msg.mine[data-status='read']").filter({ hasText: "Perfect" }).waitFor({ timeout: 15_000 });

  // Some life in the room.
  const roomSays = [[2, "the second half starts in 5"], [6, "what a goal"], [0, "replay please!"]];
  for (const [i, text] of roomSays) await clients[i].sendMessage({ room, op: 1000, id: `r-${i}`, body: { text } });
  await alice.locator('.conv[data-conv="room"]').getByText("12 online").waitFor({ timeout: 15_000 });

  await alice.screenshot({ path: join(out, "demo-chat.png") });
  await bob.getByRole("button", { name: "Back to conversations" }).click();
  await open(bob, "group:9");
  await bob.locator(".msg").filter({ hasText: "See you at the station" }).waitFor();
  await bob.screenshot({ path: join(out, "demo-chat-phone.png") });
  console.log(`screenshots in ${out}`);
} finally {
  for (const c of clients) c.close();
  await shutdown();
}
