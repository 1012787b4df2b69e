// Run by lifecycle.test.js as `node --experimental-websocket native-client.mjs URL`:
// the client with no WebSocket option, on the runtime's own (browser-like) one.
import { RimClient } from "../../dist/index.js";

const client = new RimClient({ url: process.argv[2], token: { mid: 1701, room_id: "live://native" }, im: true, heartbeatInterval: 100 });
const log = (...words) => console.log(words.join(" "));
client.on("state", (s) => log("state", s.state));
client.on("synced", (s) => log("synced", s.last));
client.on("message", (m) => {
  log("message", m.seq, m.text());
  client.close();
});
client.on("online", (o) => log("online", o.count));
client.connect();
