// Compiled (not run) by `npm run build`: the published declarations serve a
// TypeScript app the way the README shows.
import {
  RimClient,
  RimError,
  weightedNodes,
  type ChatEnvelope,
  type Incomplete,
  type Message,
  type Notify,
  type OnlineEvent,
  type Push,
  type SendResult,
  type StateEvent,
} from "../../dist/index.js";

const rim = new RimClient({
  url: weightedNodes("https://im.example.com"),
  token: async () => ({ mid: 123, room_id: "live://1000", accepts: [1000] }),
  im: true,
  storage: { getItem: () => null, setItem: () => {} },
  backoff: { base: 1000, max: 60_000 },
});
const offs: Array<() => void> = [
  rim.on("state", (s: StateEvent) => void [s.state, s.previous, s.reason, s.delay, s.attempt]),
  rim.on("message", (m: Message) => void rim.markRead(m.seq + m.json<ChatEnvelope<{ text: string }>>().body.text.length)),
  rim.on("push", (p: Push) => void [p.op, p.text()]),
  rim.on("incomplete", (i: Incomplete) => void [i.from, i.previousLast, i.newEpoch]),
  rim.on("online", (o: OnlineEvent) => void o.count),
  rim.on("notify", (n: Notify) => void n.seq),
  rim.on("synced", (s) => void s.last),
  rim.on("error", (e: Error) => void (e instanceof RimError ? e.code : e.message)),
];
rim.connect();
const sent: Promise<SendResult> = rim.send({ group: 9, body: { text: "hi" } });
sent.catch((err: RimError) => rim.send({ group: 9, body: { text: "hi" }, id: err.id }));
void Promise.all([rim.changeRoom("live://2"), rim.joinRoom("chat://3"), rim.subscribe([1001])]);
const where: string = rim.key + rim.room + rim.rooms.join() + rim.accepts.join() + rim.state;
void [where, rim.position?.epoch, rim.position?.last, offs];
// @ts-expect-error: exactly the documented events
rim.on("nonsense", () => {});
