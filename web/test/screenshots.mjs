// Takes the README's screenshots of the admin console (docs/img/): a rim
// standalone with clients in a few rooms, stored messages and a steady
// stream of pushes, so the charts and tables have something to show.
//
//   npm run screenshots                 (after cargo build --bin rim)
//   TRAFFIC_SECONDS=30 npm run screenshots     (a shorter traffic run: shorter charts)
//
// Not part of the suite: it writes into the repository.
import { mkdir } from "node:fs/promises";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { GoimClient } from "./goim.mjs";
import { api, newPage, shutdown, startRim } from "./harness.mjs";

const out = resolve(fileURLToPath(new URL("../../docs/img", import.meta.url)));
const seconds = Number(process.env.TRAFFIC_SECONDS ?? 150);

const server = await startRim();
const clients = [];
try {
  await mkdir(out, { recursive: true });
  // Clients: a busy live room, a quieter one, a lobby, a support chat.
  const rooms = [["live://1000", 24], ["live://2000", 13], ["game://lobby", 7], ["chat://support", 3]];
  let mid = 1000;
  for (const [room, count] of rooms) {
    for (let i = 0; i < count; i++) {
      clients.push(await GoimClient.connect(server.tcp[0], { mid: ++mid, room_id: room, accepts: [1000, 1001] }));
    }
  }
  clients.push(await GoimClient.connect(server.tcp[0], { mid: 123, key: "web-7f3a", im: true, since: { seq: 0 } }));
  clients.push(await GoimClient.connect(server.tcp[0], { mid: 123, key: "phone-c21e", im: true, since: { seq: 0 } }));

  // A mailbox with some history, a group and a mute.
  await api(server, "PUT", "/rim/v1/groups/9/members", { mids: [123, 456, 789] });
  const history = [
    ["order-1041", { type: "order", text: "Your order #1041 has shipped", eta: "2 days" }],
    ["promo-spring", { type: "promo", text: "Spring sale: 20% off this weekend" }],
    ["chat-17", { from: "alice", text: "are we still on for friday?" }],
    ["order-1041-delivered", { type: "order", text: "Order #1041 was delivered" }],
  ];
  for (const [id, body] of history) {
    await api(server, "POST", `/goim/push/mids?operation=1000&mids=123&store=1&id=${id}`, JSON.stringify(body));
  }
  await api(server, "POST", "/rim/v1/groups/9/messages", { op: 1001, body: { text: "standup moved to 10:30" } });
  await api(server, "PUT", "/rim/v1/users/456/mute", { until: null, scope: "all" });
  for (const c of clients.slice(-2)) c.send(21, JSON.stringify({ seq: 5 }));

  const desktop = await newPage(server, "/admin/", { viewport: { width: 1440, height: 900 } });
  const phone = await newPage(server, "/admin/", {
    viewport: { width: 390, height: 844 },
    deviceScaleFactor: 2,
    isMobile: true,
    hasTouch: true,
  });

  // Traffic: room pushes in waves, user pushes, a broadcast now and then.
  const end = Date.now() + seconds * 1000;
  let tick = 0;
  while (Date.now() < end) {
    tick++;
    const wave = 3 + Math.round(3 * Math.sin(tick / 25) + 2 * Math.sin(tick / 7));
    const sends = [];
    for (let i = 0; i < wave; i++) {
      sends.push(api(server, "POST", "/goim/push/room?operation=1000&type=live&room=1000", `{"n":${tick}}`));
    }
    if (tick % 3 === 0) sends.push(api(server, "POST", `/goim/push/mids?operation=1000&mids=${1001 + (tick % 40)}`, "{}"));
    if (tick % 40 === 0) sends.push(api(server, "POST", "/goim/push/all?operation=1001", '{"notice":"maintenance at 02:00"}'));
    await Promise.all(sends);
    for (const c of clients) c.frames.length = 0;
    await new Promise((r) => setTimeout(r, 200));
  }

  await desktop.screenshot({ path: join(out, "admin-overview.png") });
  await phone.screenshot({ path: join(out, "admin-overview-phone.png") });

  await desktop.goto("/admin/#/mailbox/123");
  await desktop.getByText("Order #1041 was delivered").waitFor();
  await desktop.locator('[data-section="cursor"]').getByText("phone-c21e").waitFor();
  await desktop.screenshot({ path: join(out, "admin-mailbox.png") });

  await phone.goto("/admin/#/push");
  await phone.getByLabel("User ids").fill("123, 456");
  await phone.getByLabel(/Store in the users' mailboxes/).check();
  await phone.getByLabel("Body").fill('{"text": "Your table is ready"}');
  await phone.getByRole("button", { name: "Send push" }).click();
  await phone.getByRole("status").getByText(/Stored for 2 users/).waitFor();
  await phone.evaluate(() => window.scrollTo(0, 0));
  await phone.screenshot({ path: join(out, "admin-push-phone.png") });
  console.log(`screenshots in ${out}`);
} finally {
  for (const c of clients) c.close();
  await shutdown();
}
