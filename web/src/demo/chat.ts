// The chat screen: one RimClient (the SDK, in IM mode) and what it shows.
//
// - The connection is the SDK's alone: it syncs what was missed on every
//   (re)connect, acks, resends unanswered messages, and reports its state,
//   which the top bar shows ("Online", "Catching up…", "Offline").
// - History on open: the mailbox's newest messages over HTTP (`GET
//   /rim/v1/users/{mid}/messages?before=`); on a new device the SDK starts
//   at the mailbox's top, so it brings only what comes after.
// - Conversations are derived from rim's envelopes: `to`/`from` (one to
//   one), `group`, `room` (the live room, not stored); a backend's push (no
//   envelope) goes to "Notifications".
// - Marks on the user's messages: sending (op 4 out), sent (op 5 code 0:
//   stored), delivered (a device of the peer acked it) and read (the peer's
//   read mark passed it), the last two from the peer's cursor over HTTP
//   while the conversation is open. A refused send shows op 5's reason.
// - Read marks: op 22 up to the first message not seen yet, whatever
//   conversation it is in (the mailbox has one read position).

import { RimClient, RimError, memoryStorage, type Incomplete, type Message, type StateEvent, type SyncStorage } from "../../../sdk/js/src/index";
import { h, replace } from "../shared/dom";
import * as api from "./api";
import { asEnvelope, textOf, Store, type Conv, type ConvId, type Item } from "./model";
import { saveSession, type Session } from "./session";

/** Settings a link can carry (tests use short heartbeats so a dead network shows fast). */
export interface Tuning {
  /** Heartbeat interval in ms (default 10 s, so the room's online count stays fresh); the timeout is twice it. */
  heartbeat?: number;
}

/** The ops the demo receives as pushes (keyed pushes and broadcasts are filtered by them). */
const ACCEPTS = [1000, 1001, 1002];
const PEER_POLL_MS = 1500;
const ROOM_KEEP = 200;

function localStore(): SyncStorage {
  try {
    localStorage.setItem("rim.demo.probe", "1");
    localStorage.removeItem("rim.demo.probe");
    return localStorage;
  } catch {
    return memoryStorage();
  }
}

function bodyOf(message: { json(): unknown; text(): string }): unknown {
  try {
    return message.json();
  } catch {
    return message.text();
  }
}

const sameDay = (a: Date, b: Date) => a.toDateString() === b.toDateString();

function clock(ts: number): string {
  const d = new Date(ts);
  return `${String(d.getHours()).padStart(2, "0")}:${String(d.getMinutes()).padStart(2, "0")}`;
}

function when(ts: number): string {
  const d = new Date(ts);
  if (sameDay(d, new Date())) return clock(ts);
  return d.toLocaleDateString("en-US", { month: "short", day: "numeric" });
}

function dayLabel(ts: number): string {
  const d = new Date(ts);
  const today = new Date();
  if (sameDay(d, today)) return "Today";
  if (sameDay(d, new Date(today.getTime() - 86_400_000))) return "Yesterday";
  return d.toLocaleDateString("en-US", { weekday: "long", month: "long", day: "numeric" });
}

const ICONS = {
  bell: "M12 22a2.5 2.5 0 002.4-2h-4.8a2.5 2.5 0 002.4 2zm7-6V11a7 7 0 00-5.5-6.8V3.5a1.5 1.5 0 00-3 0v.7A7 7 0 005 11v5l-2 2v1h18v-1z",
  live: "M12 9.5a2.5 2.5 0 100 5 2.5 2.5 0 000-5zM7.8 7.8a6 6 0 000 8.4l-1.4 1.4a8 8 0 010-11.2zm8.4 0l1.4-1.4a8 8 0 010 11.2l-1.4-1.4a6 6 0 000-8.4zM4.9 4.9A10 10 0 002 12a10 10 0 002.9 7.1l-1.4 1.4A12 12 0 010 12a12 12 0 013.5-8.5zm14.2 0l1.4-1.4A12 12 0 0124 12a12 12 0 01-3.5 8.5l-1.4-1.4A10 10 0 0022 12a10 10 0 00-2.9-7.1z",
  back: "M15.4 7.4L14 6l-6 6 6 6 1.4-1.4L10.8 12z",
  plus: "M19 13h-6v6h-2v-6H5v-2h6V5h2v6h6z",
  send: "M2 21l21-9L2 3v7l15 2-15 2z",
};

function icon(name: keyof typeof ICONS, cls = "icon"): SVGSVGElement {
  const el = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  el.setAttribute("viewBox", "0 0 24 24");
  el.setAttribute("aria-hidden", "true");
  el.setAttribute("class", cls);
  const path = document.createElementNS("http://www.w3.org/2000/svg", "path");
  path.setAttribute("d", ICONS[name]);
  el.append(path);
  return el;
}

function hue(n: number): string {
  return String((n * 47) % 360);
}

/** A round picture for a user, a group, the notifications or the room. */
function avatar(conv: Pick<Conv, "kind" | "peer">, small = false): HTMLElement {
  const el = h("span", { class: `avatar avatar-${conv.kind}${small ? " avatar-small" : ""}`, "aria-hidden": "true" });
  if (conv.kind === "notices") el.append(icon("bell"));
  else if (conv.kind === "room") el.append(icon("live"));
  else {
    el.textContent = conv.kind === "group" ? "#" : String(conv.peer).slice(-3);
    el.style.setProperty("--hue", hue(conv.peer));
  }
  return el;
}

export class ChatApp {
  private readonly store: Store;
  private readonly client: RimClient;
  private readonly storage = localStore();
  private readonly offs: (() => void)[] = [];
  private active: ConvId | null = null;
  /** Phone layout: the list or the open conversation. */
  private pane: "list" | "thread" = "list";
  private state: StateEvent | null = null;
  private syncing = false;
  private connects = 0;
  private roomCount: number | null = null;
  private roomUnread = 0;
  private readSent = 0;
  private historyMore = false;
  private historyNote = "";
  private loadingEarlier = false;
  private lost: Incomplete | null = null;
  private members = new Map<number, number[] | string>();
  private peerTimer?: ReturnType<typeof setTimeout>;
  private peerBusy = false;
  private scheduled = false;
  private stick = true;
  private closed = false;
  private readonly narrow = matchMedia("(max-width: 760px)");

  // elements
  private readonly root: HTMLElement;
  private readonly status = h("span", { class: "status", role: "status", "aria-live": "polite" });
  private readonly offline = h("div", { class: "offline-bar", hidden: true });
  private readonly banner = h("div", { class: "banner", role: "alert", hidden: true });
  private readonly list = h("ul", { class: "convs", "aria-label": "Conversations" });
  private readonly thread = h("section", { class: "thread", "aria-label": "Conversation" });
  private readonly threadHead = h("header", { class: "thread-head" });
  private readonly threadNote = h("div", { class: "thread-note" });
  private readonly messages = h("ol", { class: "messages", "aria-label": "Messages" });
  private readonly input = h("input", { type: "text", "aria-label": "Message", placeholder: "Write a message", autocomplete: "off", maxlength: 1000 });
  private readonly composer = h("form", { class: "composer" });
  private readonly empty = h("div", { class: "thread-empty" });
  private readonly dialog = h("dialog", { class: "dialog card", "aria-labelledby": "new-chat-title" });

  constructor(
    root: HTMLElement,
    private readonly session: Session,
    tuning: Tuning,
    private readonly onSignOut: (error?: string) => void,
  ) {
    this.root = root;
    this.store = new Store(session.mid);
    const heartbeat = tuning.heartbeat ?? 10_000;
    this.client = new RimClient({
      url: session.ws,
      token: session.jwt ? { token: session.jwt, platform: "web" } : { mid: session.mid, platform: "web" },
      room: session.room,
      accepts: ACCEPTS,
      im: true,
      storage: this.storage,
      storageKey: `rim:sync:${session.mid}`,
      heartbeatInterval: heartbeat,
      heartbeatTimeout: Math.max(1000, 2 * heartbeat),
      connectTimeout: Math.max(3000, 2 * heartbeat),
    });
    if (session.room) this.store.conv("room");
    this.build();
    this.listen();
    void this.start();
  }

  // === the connection ===

  private listen(): void {
    const c = this.client;
    this.offs.push(
      c.on("state", (s) => {
        this.state = s;
        if (s.state === "connected") {
          this.connects++;
          this.syncing = true;
          // A read mark made before this connection is sent again.
          this.readSent = 0;
        }
        if (s.state === "reconnecting" && this.connects === 0 && s.reason === "auth_failed") {
          // The first sign-in was refused: back to the form with the reason.
          this.signOut(`The server refused the sign-in (auth_failed). ${this.session.jwt ? "Check the token: its signature, its exp." : ""}`.trim());
          return;
        }
        if (s.state !== "connected") this.roomCount = null;
        this.schedule();
      }),
      c.on("message", (m: Message) => {
        const item = this.store.addStored(m.seq, m.op, bodyOf(m));
        if (item && !item.mine && item.conv.startsWith("user:")) this.refreshPeerSoon();
        this.schedule();
      }),
      c.on("push", (p) => {
        const item = this.store.addPush(p.op, bodyOf(p));
        if (item?.conv === "room") {
          if (this.active !== "room") this.roomUnread++;
          this.trimRoom();
        }
        this.schedule();
      }),
      c.on("synced", () => {
        this.syncing = false;
        this.schedule();
      }),
      c.on("incomplete", (lost) => {
        this.lost = lost;
        if (lost.newEpoch) {
          this.store.clearStored();
          void this.loadHistory(lost.top + 1);
        }
        this.schedule();
      }),
      c.on("online", (o) => {
        if (o.count === this.roomCount) return;
        this.roomCount = o.count;
        this.schedule();
      }),
      c.on("notify", (n) => {
        // Read on another device.
        if (n.kind === "read" && this.store.setReadMark(n.seq)) this.schedule();
      }),
      c.on("error", (err) => console.warn("rim:", err.message)),
    );
    const visible = () => this.schedule();
    document.addEventListener("visibilitychange", visible);
    this.offs.push(() => document.removeEventListener("visibilitychange", visible));
    const resize = () => this.schedule();
    this.narrow.addEventListener("change", resize);
    this.offs.push(() => this.narrow.removeEventListener("change", resize));
  }

  /** The cursor and the history first (HTTP), then the connection. */
  private async start(): Promise<void> {
    const me = this.session.mid;
    try {
      const cursor = await api.cursor(me);
      if (this.closed) return;
      this.store.setReadMark(cursor.read);
      // A new device starts at the mailbox's top: the history below it
      // comes over HTTP, not as a sync of the whole mailbox.
      const key = `rim:sync:${me}`;
      if (cursor.top > 0 && (await this.storage.getItem(key)) === null) {
        await this.storage.setItem(key, JSON.stringify({ epoch: cursor.epoch, last: cursor.top }));
      }
      this.client.connect();
      if (cursor.top >= cursor.first) await this.loadHistory(cursor.top + 1);
    } catch (err) {
      // Without the API (a token it wants, say) the SDK syncs the mailbox itself.
      this.historyNote = `History over HTTP is not available (${err instanceof Error ? err.message : String(err)}); showing what the connection brings.`;
      if (!this.closed && this.client.state === "idle") this.client.connect();
      this.schedule();
    }
  }

  private async loadHistory(before: number): Promise<void> {
    try {
      const page = await api.history(this.session.mid, before, 100);
      if (this.closed) return;
      for (const m of page.messages) this.store.addStored(m.seq, m.op, api.decodeBody(m), { from: m.from, ts: m.ts });
      this.historyMore = page.more;
      this.historyNote = "";
    } catch (err) {
      this.historyNote = `Could not load the history: ${err instanceof Error ? err.message : String(err)}`;
    }
    this.schedule();
  }

  private async loadEarlier(): Promise<void> {
    const lowest = this.store.lowestSeq;
    if (this.loadingEarlier || lowest <= 1) return;
    this.loadingEarlier = true;
    this.stick = false;
    this.schedule();
    await this.loadHistory(lowest);
    this.loadingEarlier = false;
    this.schedule();
  }

  private signOut(error?: string): void {
    this.close();
    saveSession(null);
    this.onSignOut(error);
  }

  /** Stops the client and every timer and listener. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.peerTimer);
    for (const off of this.offs) off();
    this.client.close();
  }

  // === sending ===

  private async send(text: string): Promise<void> {
    const conv = this.active ? this.store.conv(this.active) : null;
    if (!conv || conv.kind === "notices") return;
    const target =
      conv.kind === "user" ? { to: conv.peer } : conv.kind === "group" ? { group: conv.peer } : { room: this.client.room };
    const id = `d${Date.now().toString(36)}${Math.random().toString(36).slice(2, 8)}`;
    const item = this.store.addPending(conv.id, id, { text }, target);
    this.stick = true;
    this.schedule();
    await this.deliver(item);
  }

  /** op 4 with the item's id (again, for a retry): its mark follows op 5. */
  private async deliver(item: Item): Promise<void> {
    this.store.setStatus(item, "sending");
    this.schedule();
    try {
      await this.client.send({ ...item.target, body: item.body, id: item.id });
      this.store.setStatus(item, "sent");
      if (item.conv.startsWith("user:")) this.refreshPeerSoon();
    } catch (err) {
      const e = err instanceof RimError ? err : new RimError(0, String(err));
      this.store.setStatus(item, "failed", { reason: e.reason, code: e.code });
    }
    this.schedule();
  }

  // === the peer's marks ===

  /** Messages of ours in the open conversation the peer has not read yet. */
  private awaitingPeer(): number | null {
    if (!this.active?.startsWith("user:") || !this.threadVisible()) return null;
    const waiting = this.store.list(this.active).some((i) => i.mine && i.seq > 0 && (i.status === "sent" || i.status === "delivered"));
    return waiting ? this.store.conv(this.active).peer : null;
  }

  private refreshPeerSoon(): void {
    clearTimeout(this.peerTimer);
    this.peerTimer = setTimeout(() => {
      this.peerTimer = undefined;
      void this.refreshPeer();
    }, 0);
  }

  /**
   * Reads the peer's cursor: its devices' acks (delivered) and its read
   * mark (read) are seqs of the peer's mailbox, so the peer's messages up
   * to them tell which of ours they cover (the same ids in both mailboxes).
   * Polled while the conversation is open and some of ours is unread.
   */
  private async refreshPeer(): Promise<void> {
    const peer = this.awaitingPeer();
    if (peer === null || this.closed || this.peerBusy) return;
    this.peerBusy = true;
    try {
      const cursor = await api.cursor(peer);
      const acked = Math.max(0, ...Object.values(cursor.devices ?? {}).map((d) => d.ack));
      const upto = Math.max(acked, cursor.read);
      if (upto > 0) {
        const page = await api.history(peer, upto + 1, 100);
        const ours = page.messages.filter((m) => (asEnvelope(m.body)?.from ?? m.from) === this.session.mid);
        const conv = `user:${peer}`;
        const key = (m: api.Page["messages"][number]) => `${this.session.mid}:${asEnvelope(m.body)?.id ?? m.id}`;
        const delivered = ours.find((m) => m.seq <= acked);
        const read = ours.find((m) => m.seq <= cursor.read);
        let changed = false;
        if (delivered) changed = this.store.markUpTo(conv, key(delivered), "delivered") || changed;
        if (read) changed = this.store.markUpTo(conv, key(read), "read") || changed;
        if (changed) this.schedule();
      }
    } catch (err) {
      console.warn("rim: the peer's cursor:", err instanceof Error ? err.message : String(err));
    } finally {
      this.peerBusy = false;
    }
    if (this.awaitingPeer() !== null && !this.closed && this.peerTimer === undefined) {
      this.peerTimer = setTimeout(() => {
        this.peerTimer = undefined;
        void this.refreshPeer();
      }, PEER_POLL_MS);
    }
  }

  // === groups, rooms ===

  private async loadMembers(gid: number): Promise<void> {
    try {
      this.members.set(gid, (await api.groupMembers(gid)).mids);
    } catch (err) {
      this.members.set(gid, err instanceof api.HttpError && err.status === 404 ? [] : String(err instanceof Error ? err.message : err));
    }
    this.schedule();
  }

  /** Room messages are live only: the page keeps the latest few hundred. */
  private trimRoom(): void {
    this.store.trim("room", ROOM_KEEP);
  }

  private async switchRoom(room: string): Promise<void> {
    this.roomCount = null;
    this.session.room = room;
    saveSession(this.session);
    this.schedule();
    try {
      await this.client.changeRoom(room);
    } catch (err) {
      console.warn("rim: room change:", err instanceof Error ? err.message : String(err));
    }
  }

  // === the screen ===

  private open(conv: ConvId | null): void {
    this.active = conv;
    this.pane = conv ? "thread" : "list";
    this.stick = true;
    if (conv === "room") this.roomUnread = 0;
    const c = conv ? this.store.conv(conv) : null;
    if (c?.kind === "group") void this.loadMembers(c.peer);
    this.schedule();
    if (conv) {
      this.refreshPeerSoon();
      // Not on a phone: the keyboard would cover the conversation.
      if (!this.narrow.matches) queueMicrotask(() => this.input.focus());
    }
  }

  private threadVisible(): boolean {
    return this.active !== null && document.visibilityState === "visible" && (!this.narrow.matches || this.pane === "thread");
  }

  private schedule(): void {
    if (this.scheduled || this.closed) return;
    this.scheduled = true;
    queueMicrotask(() => {
      this.scheduled = false;
      if (!this.closed) this.render();
    });
  }

  private build(): void {
    const me = this.session.mid;
    const signOut = h("button", { type: "button", class: "btn btn-ghost btn-small" }, "Sign out");
    signOut.addEventListener("click", () => this.signOut());
    const topbar = h(
      "header",
      { class: "topbar" },
      h("div", { class: "brand" }, h("span", { class: "brand-mark", "aria-hidden": "true" }, "rim"), h("span", { class: "brand-name" }, "rim chat")),
      this.status,
      h("div", { class: "me" }, avatar({ kind: "user", peer: me }, true), h("span", { class: "me-name" }, `User ${me}`), signOut),
    );

    const newChat = h("button", { type: "button", class: "btn btn-primary btn-small", "aria-haspopup": "dialog" }, icon("plus"), "New chat");
    newChat.addEventListener("click", () => this.openDialog());
    const sidebar = h(
      "aside",
      { class: "sidebar" },
      h("div", { class: "sidebar-head" }, h("h2", {}, "Chats"), newChat),
      this.list,
      h("p", { class: "sidebar-foot muted" }, "Built on rim's JavaScript SDK. ", h("a", { href: "../admin/" }, "Admin console")),
    );

    const send = h("button", { type: "submit", class: "btn btn-primary send", "aria-label": "Send" }, icon("send"), h("span", { class: "send-label" }, "Send"));
    this.composer.append(this.input, send);
    this.composer.addEventListener("submit", (event) => {
      event.preventDefault();
      const text = this.input.value.trim();
      if (!text) return;
      this.input.value = "";
      void this.send(text);
    });
    this.messages.addEventListener("scroll", () => {
      const m = this.messages;
      this.stick = m.scrollHeight - m.scrollTop - m.clientHeight < 40;
    });
    this.thread.append(this.threadHead, this.threadNote, this.messages, this.composer, this.empty);
    this.buildDialog();

    replace(
      this.root,
      h(
        "div",
        { class: "app" },
        topbar,
        this.offline,
        this.banner,
        h("div", { class: "layout" }, sidebar, this.thread),
        this.dialog,
      ),
    );
  }

  private buildDialog(): void {
    const mode = { group: false };
    const who = h("input", { type: "text", inputmode: "numeric", id: "new-chat-who", autocomplete: "off" });
    const people = h("input", { type: "text", id: "new-chat-people", autocomplete: "off", placeholder: "e.g. 456, 789" });
    const whoLabel = h("label", { for: "new-chat-who" }, "User id");
    const whoHint = h("span", { class: "hint" }, "");
    const peopleField = h("div", { class: "field" }, h("label", { for: "new-chat-people" }, "Add people (optional)"), people);
    const error = h("div", { class: "outcome", role: "alert" });
    const submit = h("button", { type: "submit", class: "btn btn-primary" }, "Open chat");
    const cancel = h("button", { type: "button", class: "btn btn-secondary" }, "Cancel");
    cancel.addEventListener("click", () => this.dialog.close());
    const draw = () => {
      whoLabel.textContent = mode.group ? "Group id" : "User id";
      whoHint.textContent = mode.group
        ? "Joining adds you to the group (it is made when its first member joins)."
        : "Anyone: rim keeps the messages until they come online.";
      peopleField.hidden = !mode.group;
      submit.textContent = mode.group ? "Join group" : "Open chat";
      error.className = "outcome";
      error.replaceChildren();
    };
    const radios = (["Person", "Group"] as const).flatMap((label, i) => {
      const input = h("input", { type: "radio", name: "new-chat-kind", id: `new-chat-kind-${i}` });
      input.checked = i === 0;
      input.addEventListener("change", () => {
        mode.group = i === 1;
        draw();
      });
      return [input, h("label", { for: input.id }, label)];
    });
    const form = h(
      "form",
      { class: "form", method: "dialog", novalidate: true },
      h("h2", { id: "new-chat-title" }, "New chat"),
      h("div", { class: "segmented", role: "radiogroup", "aria-label": "Chat with" }, ...radios),
      h("div", { class: "field" }, whoLabel, who, whoHint),
      peopleField,
      error,
      h("div", { class: "actions" }, submit, cancel),
    );
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const fail = (message: string) => {
        error.className = "outcome outcome-error";
        replace(error, h("p", {}, message));
      };
      const id = /^\s*\d+\s*$/.test(who.value) ? Number(who.value) : 0;
      if (!Number.isSafeInteger(id) || id <= 0) return fail(`The ${mode.group ? "group" : "user"} id is a positive whole number.`);
      if (!mode.group) {
        if (id === this.session.mid) return fail("That is you: pick someone else.");
        this.dialog.close();
        this.store.conv(`user:${id}`);
        this.open(`user:${id}`);
        return;
      }
      const others = people.value.split(/[\s,]+/).filter(Boolean);
      if (others.some((p) => !/^\d+$/.test(p) || Number(p) <= 0)) return fail("Add people by their user ids, separated by commas.");
      submit.disabled = true;
      try {
        const answer = await api.addMembers(id, [this.session.mid, ...others.map(Number)]);
        this.members.set(id, answer.mids);
        this.dialog.close();
        this.store.conv(`group:${id}`);
        this.open(`group:${id}`);
      } catch (err) {
        fail(`Could not join group ${id}: ${err instanceof Error ? err.message : String(err)}`);
      } finally {
        submit.disabled = false;
      }
    });
    this.dialog.append(form);
    this.dialog.addEventListener("close", () => {
      who.value = "";
      people.value = "";
      draw();
    });
    draw();
  }

  private openDialog(): void {
    this.dialog.showModal();
    this.dialog.querySelector<HTMLInputElement>("#new-chat-who")?.focus();
  }

  private render(): void {
    const app = this.root.querySelector<HTMLElement>(".app");
    if (app) {
      app.dataset.pane = this.pane;
      app.dataset.connects = String(this.connects);
    }
    // What the open conversation shows is seen (before the list counts unread).
    if (this.threadVisible() && this.active !== "room") this.store.see(this.active!);
    this.renderStatus();
    this.renderBanner();
    this.renderList();
    this.renderThread();
    this.sendRead();
    if (this.awaitingPeer() !== null && this.peerTimer === undefined && !this.peerBusy) this.refreshPeerSoon();
  }

  private renderStatus(): void {
    const s = this.state?.state ?? "connecting";
    let key: string;
    let label: string;
    let detail = "";
    if (s === "connected") {
      key = this.syncing ? "syncing" : "online";
      label = this.syncing ? "Catching up…" : "Online";
    } else if (s === "reconnecting") {
      key = "offline";
      label = this.connects === 0 ? "Can't connect" : "Offline";
      detail = this.state?.reason ? `${this.state.reason}; reconnecting` : "reconnecting";
    } else {
      key = "connecting";
      label = "Connecting…";
    }
    this.status.dataset.state = key;
    this.status.title = detail;
    replace(this.status, h("span", { class: "dot", "aria-hidden": "true" }), label);
    this.offline.hidden = key !== "offline";
    if (key === "offline" && this.connects === 0) {
      replace(
        this.offline,
        h("strong", {}, "Can't reach the server."),
        ` ${this.session.ws}: ${this.state?.reason ?? "no answer"}. Retrying; to use another address, sign out and change it under Connection.`,
      );
    } else if (key === "offline" && this.state?.reason === "auth_failed") {
      replace(
        this.offline,
        h("strong", {}, "Signed out by the server."),
        " It no longer accepts this sign-in (auth_failed; an expired token?): sign out and sign in again.",
      );
    } else if (key === "offline") {
      replace(
        this.offline,
        h("strong", {}, "You're offline."),
        ` Messages you send now go out when the connection is back${this.state?.reason ? ` (${this.state.reason})` : ""}.`,
      );
    }
  }

  private renderBanner(): void {
    const lost = this.lost;
    this.banner.hidden = lost === null;
    if (!lost) return;
    const dismiss = h("button", { type: "button", class: "btn btn-ghost btn-small" }, "Dismiss");
    dismiss.addEventListener("click", () => {
      this.lost = null;
      this.schedule();
    });
    const missing = lost.from - lost.previousLast - 1;
    const text = lost.newEpoch
      ? "The server's message store started a new history: messages from before it are no longer available."
      : `${missing} message${missing === 1 ? "" : "s"} from while you were away ${missing === 1 ? "is" : "are"} no longer stored on the server (${missing === 1 ? `seq ${lost.previousLast + 1}` : `seqs ${lost.previousLast + 1}–${lost.from - 1}`}); everything after ${missing === 1 ? "it" : "them"} is here.`;
    replace(this.banner, h("div", {}, h("strong", {}, "Not everything could be caught up. "), text), dismiss);
  }

  private convTitle(conv: Conv): string {
    switch (conv.kind) {
      case "user":
        return `User ${conv.peer}`;
      case "group":
        return `Group ${conv.peer}`;
      case "notices":
        return "Notifications";
      case "room":
        return "Live room";
    }
  }

  private preview(item: Item | null): string {
    if (!item) return "No messages yet";
    const { text } = textOf(item.body);
    const who = item.mine ? "You: " : this.store.conv(item.conv).kind === "group" || item.conv === "room" ? `${item.from}: ` : "";
    return `${who}${text}`;
  }

  private renderList(): void {
    const rows: HTMLElement[] = [];
    const entry = (conv: Conv, subtitle: string, unread: number, extra?: HTMLElement) => {
      const button = h(
        "button",
        { type: "button", class: "conv", "data-conv": conv.id, "aria-current": conv.id === this.active ? "true" : null },
        avatar(conv),
        h(
          "span",
          { class: "conv-main" },
          h("span", { class: "conv-title" }, this.convTitle(conv)),
          h("span", { class: "conv-preview" }, subtitle),
        ),
        h(
          "span",
          { class: "conv-side" },
          conv.last ? h("time", { class: "conv-time" }, when(conv.last.ts)) : extra ?? null,
          unread > 0 ? h("span", { class: "unread", "aria-label": `${unread} unread` }, String(unread)) : null,
        ),
      );
      button.addEventListener("click", () => this.open(conv.id));
      rows.push(h("li", {}, button));
    };
    if (this.session.room) {
      const room = this.store.conv("room");
      const count = this.roomCount === null ? "…" : String(this.roomCount);
      entry(room, `${this.session.room} · ${count} online`, this.roomUnread);
    }
    for (const conv of this.store.ordered()) entry(conv, this.preview(conv.last), this.store.unread(conv.id));
    if (this.store.ordered().length === 0) {
      rows.push(h("li", { class: "convs-empty muted" }, "No conversations yet. Start one with New chat: a person by their user id, or a group."));
    }
    replace(this.list, rows);
  }

  private renderThread(): void {
    const conv = this.active ? this.store.conv(this.active) : null;
    this.empty.hidden = conv !== null;
    for (const el of [this.threadHead, this.threadNote, this.messages, this.composer]) el.hidden = conv === null;
    if (!conv) {
      replace(
        this.empty,
        h("div", { class: "thread-empty-inner" }, h("h2", {}, "Pick a conversation"), h("p", { class: "muted" }, "Or start one with New chat: message a person by their user id, or join a group.")),
      );
      return;
    }
    const back = h("button", { type: "button", class: "btn btn-ghost back", "aria-label": "Back to conversations" }, icon("back"));
    back.addEventListener("click", () => {
      this.pane = "list";
      this.schedule();
    });
    let subtitle: Node | string = "";
    if (conv.kind === "user") subtitle = "Direct messages";
    else if (conv.kind === "notices") subtitle = "Pushed by the server";
    else if (conv.kind === "room") subtitle = `${this.session.room} · ${this.roomCount === null ? "…" : this.roomCount} online`;
    else {
      const members = this.members.get(conv.peer);
      subtitle =
        members === undefined
          ? "…"
          : typeof members === "string"
            ? `Members unknown: ${members}`
            : members.length === 0
              ? "No members"
              : `${members.length} member${members.length === 1 ? "" : "s"}: ${members.map((m) => (m === this.session.mid ? "you" : m)).join(", ")}`;
    }
    replace(
      this.threadHead,
      back,
      avatar(conv),
      h("div", { class: "thread-title" }, h("h1", {}, this.convTitle(conv)), h("p", { class: "thread-sub", "data-sub": "" }, subtitle)),
    );
    if (conv.kind === "room") this.threadHead.dataset.online = String(this.roomCount ?? "");
    else delete this.threadHead.dataset.online;

    // Notes over the messages: the room's switcher, history problems.
    const notes: HTMLElement[] = [];
    if (conv.kind === "room") {
      const input = h("input", { type: "text", value: this.session.room, "aria-label": "Room", spellcheck: "false" });
      const form = h(
        "form",
        { class: "room-switch" },
        h("span", { class: "muted" }, "Live only: room messages are not stored."),
        input,
        h("button", { type: "submit", class: "btn btn-secondary btn-small" }, "Switch room"),
      );
      form.addEventListener("submit", (event) => {
        event.preventDefault();
        const room = input.value.trim();
        if (/^[^:/\s]+:\/\/\S+$/.test(room) && room !== this.session.room) void this.switchRoom(room);
      });
      notes.push(form);
    }
    if (this.historyNote && conv.kind !== "room") notes.push(h("p", { class: "notice" }, this.historyNote));
    if (!this.threadNote.contains(document.activeElement)) replace(this.threadNote, notes);

    const items = this.store.list(conv.id);
    const rows: HTMLElement[] = [];
    if (conv.kind !== "room" && this.historyMore) {
      const earlier = h("button", { type: "button", class: "btn btn-secondary btn-small", disabled: this.loadingEarlier }, this.loadingEarlier ? "Loading…" : "Load earlier messages");
      earlier.addEventListener("click", () => void this.loadEarlier());
      rows.push(h("li", { class: "earlier" }, earlier));
    }
    let day = "";
    for (const item of items) {
      const label = dayLabel(item.ts);
      if (label !== day) {
        day = label;
        rows.push(h("li", { class: "day" }, h("span", {}, label)));
      }
      rows.push(this.renderItem(conv, item));
    }
    if (items.length === 0) {
      rows.push(
        h(
          "li",
          { class: "messages-empty muted" },
          conv.kind === "room"
            ? "Nothing said here since you came in. Say hello: everyone in the room sees it."
            : conv.kind === "notices"
              ? "Nothing from the server yet."
              : "No messages yet. Say hello.",
        ),
      );
    }
    const keep = this.stick;
    replace(this.messages, rows);
    if (keep) this.messages.scrollTop = this.messages.scrollHeight;

    this.composer.hidden = conv.kind === "notices";
    this.input.placeholder = conv.kind === "room" ? `Message ${this.session.room}` : `Message ${this.convTitle(conv)}`;
  }

  private renderItem(conv: Conv, item: Item): HTMLElement {
    const { text, raw } = textOf(item.body);
    const showSender = !item.mine && (conv.kind === "group" || conv.kind === "room");
    const mark = item.mine && item.status ? this.mark(item) : null;
    const li = h(
      "li",
      {
        class: `msg${item.mine ? " mine" : ""}${item.status === "failed" ? " failed" : ""}`,
        "data-key": item.key,
        "data-seq": item.seq || null,
        "data-status": item.status ?? null,
      },
      h(
        "div",
        { class: "bubble" },
        showSender ? h("span", { class: "sender" }, `User ${item.from}`) : null,
        conv.kind === "notices" && item.seq === 0 ? h("span", { class: "sender" }, "Live push (not stored)") : null,
        raw ? h("pre", { class: "text raw" }, text) : h("p", { class: "text" }, text),
        h("span", { class: "meta" }, h("time", {}, clock(item.ts)), mark),
      ),
    );
    if (item.status === "failed") {
      const retry = h("button", { type: "button", class: "btn btn-ghost btn-small" }, "Retry");
      retry.addEventListener("click", () => void this.deliver(item));
      li.append(
        h(
          "div",
          { class: "send-error", role: "alert" },
          h("span", {}, `Not sent: ${item.reason ?? "refused"}${item.code ? ` (${item.code})` : ""}`),
          retry,
        ),
      );
    }
    return li;
  }

  private mark(item: Item): HTMLElement {
    const labels = { sending: "Sending…", sent: "Sent", delivered: "Delivered", read: "Read", failed: "Not sent" } as const;
    const ticks = { sending: "", sent: "✓", delivered: "✓✓", read: "✓✓", failed: "!" } as const;
    const status = item.status!;
    return h("span", { class: `mark mark-${status}`, title: labels[status] }, ticks[status] ? h("span", { class: "ticks", "aria-hidden": "true" }, ticks[status]) : null, labels[status]);
  }

  /** op 22 as far as the user has seen (see Store.readable). */
  private sendRead(): void {
    if (this.client.state !== "connected") return;
    const upto = this.store.readable();
    if (upto <= this.readSent) return;
    this.readSent = upto;
    this.store.setReadMark(upto);
    this.client.markRead(upto);
  }
}
