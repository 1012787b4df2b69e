// Mailbox: one user's stored messages (newest first, a page at a time) and
// cursor (epoch, first and top seq, read mark, each device's ack), from
// /rim/v1/users/{mid}/messages and /cursor.

import { ago, datetime, h, num, replace, shortTime } from "../../shared/dom";
import { field, inlineForm, input, Outcome, panel, pretty, table } from "../ui";
import type { Context, View } from "../view";

const PAGE = 50;

interface Message {
  seq: number;
  id: string;
  ts: number;
  op: number;
  from: number;
  body: unknown;
  body_encoding?: "base64";
}

interface Page {
  epoch: string;
  first: number;
  top: number;
  more: boolean;
  messages: Message[];
}

interface Cursor {
  epoch: string;
  first: number;
  top: number;
  read: number;
  devices: Record<string, { ack: number; ts: number }>;
}

export const mailbox: View = {
  title: "Mailbox",
  render(ctx: Context, params: string[]): HTMLElement {
    const mid = input({ name: "mid", placeholder: "123", inputmode: "numeric", value: params[0] ?? "" });
    const outcome = new Outcome();
    const cursorEl = h("div", { "data-section": "cursor" });
    const messagesEl = h("div", { "data-section": "messages" });
    const pager = h("div", { class: "actions pager" });
    let user = "";
    /** The page shown: messages with seq below `before` (newest first). */
    let before = 0;

    const load = async (page: number | "newest") => {
      outcome.clear();
      const cursor = (await ctx.api.get<Cursor>(`/rim/v1/users/${user}/cursor`, { interactive: true })).data;
      before = page === "newest" ? cursor.top + 1 : page;
      const messages = (
        await ctx.api.get<Page>(`/rim/v1/users/${user}/messages`, {
          query: { before: Math.max(1, before), limit: PAGE },
          interactive: true,
        })
      ).data;
      drawCursor(cursor);
      drawMessages(messages);
    };

    const drawCursor = (c: Cursor) => {
      const devices = Object.entries(c.devices);
      replace(
        cursorEl,
        h(
          "dl",
          { class: "facts" },
          fact("Epoch", h("code", {}, c.epoch)),
          fact("First seq", num(c.first)),
          fact("Top seq", num(c.top)),
          fact("Read up to", num(c.read)),
          fact("Stored", num(c.top >= c.first && c.top > 0 ? c.top - c.first + 1 : 0)),
        ),
        h("h3", {}, "Devices"),
        table(
          ["Connection key", "Acked up to", "Last ack"],
          devices.map(([key, d]) => [h("code", {}, key), num(d.ack), h("span", { class: "nowrap", title: datetime(d.ts) }, ago(d.ts))]),
          "No device has acked yet.",
        ),
      );
    };

    const drawMessages = (page: Page) => {
      replace(
        messagesEl,
        table(
          ["Seq", "Time", "Op", "From", "Id", "Body"],
          page.messages.map((m) => [
            h("strong", {}, String(m.seq)),
            h("span", { class: "nowrap", title: datetime(m.ts) }, shortTime(m.ts)),
            String(m.op),
            m.from === 0 ? h("span", { class: "muted" }, "backend") : String(m.from),
            h("code", { class: "id" }, m.id),
            bodyCell(m),
          ]),
          page.top === 0 ? "This mailbox is empty." : "No messages on this page.",
          { "data-testid": "messages" },
        ),
      );
      const lowest = page.messages.at(-1)?.seq ?? before;
      replace(
        pager,
        h("span", { class: "muted" }, page.messages.length ? `seq ${page.messages.at(-1)!.seq}–${page.messages[0]!.seq} of ${page.first}–${page.top}` : ""),
        h("button", { type: "button", class: "btn btn-secondary", disabled: before > page.top, onclick: () => void load("newest").catch((e) => outcome.error(e)) }, "Newest"),
        h("button", { type: "button", class: "btn btn-secondary", disabled: !page.more || lowest <= page.first, onclick: () => void load(lowest).catch((e) => outcome.error(e)) }, "Older"),
      );
    };

    const open = async () => {
      const text = mid.value.trim();
      if (!/^-?\d+$/.test(text) || text === "0") {
        outcome.error(new Error("User id: a whole number, not 0."));
        return;
      }
      user = text;
      ctx.replaceRoute(`#/mailbox/${user}`);
      try {
        await load("newest");
      } catch (err) {
        replace(cursorEl);
        replace(messagesEl);
        replace(pager);
        outcome.error(err);
      }
    };

    if (mid.value) void open();

    return h(
      "div",
      { class: "view" },
      panel(
        "User",
        inlineForm("Mailbox", "Open mailbox", open, field("User id", mid)),
        outcome.el,
      ),
      h("div", { class: "columns columns-wide" }, panel("Messages", messagesEl, pager), panel("Cursor", cursorEl)),
    );
  },
};

function fact(label: string, value: Node | string): HTMLElement[] {
  return [h("dt", {}, label), h("dd", {}, value)];
}

function bodyCell(m: Message): HTMLElement {
  if (m.body_encoding === "base64") {
    return h("span", {}, h("span", { class: "badge" }, "base64"), " ", h("code", { class: "body" }, String(m.body)));
  }
  const compact = JSON.stringify(m.body);
  if (compact.length <= 120) return h("code", { class: "body" }, compact);
  return h(
    "details",
    { class: "body" },
    h("summary", {}, h("code", {}, `${compact.slice(0, 80)}…`)),
    h("pre", {}, pretty(m.body)),
  );
}
