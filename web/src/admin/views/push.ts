// Push: send a message to users (optionally stored in their mailboxes),
// connections, a room or everyone, through goim's v2 push API.

import { h, replace, shortTime, words } from "../../shared/dom";
import { envelopeData } from "../api";
import { errorText, field, form, input, Outcome, panel, table } from "../ui";
import type { Context, View } from "../view";

type Target = "mids" | "keys" | "room" | "all";

const TARGETS: [Target, string][] = [
  ["mids", "Users"],
  ["keys", "Connections"],
  ["room", "Room"],
  ["all", "Everyone"],
];

interface Sent {
  at: number;
  target: string;
  op: number;
  result: string;
  ok: boolean;
}

/** This tab's pushes, newest first (kept while the console is open). */
const sent: Sent[] = [];

export const push: View = {
  title: "Push",
  render(ctx: Context): HTMLElement {
    const prefilledRoom = ctx.query.get("room");
    let target: Target = prefilledRoom ? "room" : "mids";

    const mids = input({ name: "mids", placeholder: "123, 456", inputmode: "numeric" });
    const keys = input({ name: "keys", placeholder: "connection keys, comma separated" });
    const room = input({ name: "room", placeholder: "live://1000", value: prefilledRoom ?? "" });
    const speed = input({ name: "speed", type: "number", min: 0, placeholder: "no limit" });
    const store = h("input", { type: "checkbox", name: "store", id: "push-store" });
    const messageId = input({ name: "id", placeholder: "optional: makes retries safe", maxlength: 64 });
    const operation = input({ name: "operation", type: "number", value: 1000, min: 1, required: true });
    const body = h("textarea", { name: "body", rows: 5, spellcheck: "false", placeholder: '{"text": "hello"}' });
    const outcome = new Outcome();
    const history = h("div", { "data-section": "sent" });

    const idField = field("Message id", messageId, "Stored once per user within the idempotency window (24 h).");
    const groups: Record<Target, HTMLElement> = {
      mids: h(
        "div",
        { class: "target-fields" },
        field("User ids", mids, "Every connection of these users (mids)."),
        h(
          "div",
          { class: "field check" },
          store,
          h("label", { for: "push-store" }, "Store in the users' mailboxes (store=1): offline users get it when they sync"),
        ),
        idField,
      ),
      keys: h("div", { class: "target-fields" }, field("Connection keys", keys, "The keys clients authenticated with.")),
      room: h("div", { class: "target-fields" }, field("Room id", room, "type://id, as in the client token's room_id.")),
      all: h("div", { class: "target-fields" }, field("Speed", speed, "Optional goim rate hint for the broadcast.")),
    };

    const tabs = h(
      "div",
      { class: "segmented", role: "radiogroup", "aria-label": "Target" },
      ...TARGETS.map(([value, label]) => {
        const radio = h("input", { type: "radio", name: "target", value, id: `target-${value}` });
        radio.checked = value === target;
        radio.addEventListener("change", () => {
          target = value;
          sync();
        });
        return h("span", {}, radio, h("label", { for: `target-${value}` }, label));
      }),
    );

    const sync = () => {
      for (const [name, el] of Object.entries(groups)) el.hidden = name !== target;
      idField.hidden = !store.checked;
    };
    store.addEventListener("change", sync);
    sync();

    const drawHistory = () =>
      replace(
        history,
        table(
          ["Time", "Target", "Op", "Result"],
          sent.map((s) => [h("span", { class: "nowrap" }, shortTime(s.at)), h("code", {}, s.target), String(s.op), h("span", { class: s.ok ? "ok" : "bad" }, s.result)]),
          "Nothing sent from this tab yet.",
        ),
      );
    drawHistory();

    const send = async () => {
      outcome.clear();
      const op = Number(operation.value);
      if (!Number.isInteger(op) || op <= 0) {
        outcome.error(new Error("Operation must be a positive whole number (1000 and up by convention)."));
        return;
      }
      let path: string;
      let query: Record<string, string | number | string[] | undefined> = { operation: op };
      let label: string;
      switch (target) {
        case "mids": {
          const list = words(mids.value);
          if (list.length === 0 || list.some((m) => !/^-?\d+$/.test(m))) {
            outcome.error(new Error("User ids: give one or more whole numbers."));
            return;
          }
          path = "/goim/push/mids";
          query = { ...query, mids: list };
          if (store.checked) query = { ...query, store: 1, id: messageId.value.trim() || undefined };
          label = `mids ${list.join(", ")}${store.checked ? " (stored)" : ""}`;
          break;
        }
        case "keys": {
          const list = words(keys.value);
          if (list.length === 0) {
            outcome.error(new Error("Connection keys: give one or more."));
            return;
          }
          path = "/goim/push/keys";
          query = { ...query, keys: list };
          label = `keys ${list.join(", ")}`;
          break;
        }
        case "room": {
          const text = room.value.trim();
          const at = text.indexOf("://");
          if (at <= 0 || at + 3 >= text.length) {
            outcome.error(new Error("Room id: write it as type://id, for example live://1000."));
            return;
          }
          path = "/goim/push/room";
          query = { ...query, type: text.slice(0, at), room: text.slice(at + 3) };
          label = `room ${text}`;
          break;
        }
        case "all":
          path = "/goim/push/all";
          query = { ...query, speed: speed.value.trim() || undefined };
          label = "everyone";
          break;
      }
      try {
        const answer = await ctx.api.request("POST", path, { query, body: body.value, interactive: true });
        const data = envelopeData<{ id?: string; accepted?: number } | null>(answer);
        const result =
          data && data.id !== undefined
            ? `Stored for ${data.accepted ?? 0} user${data.accepted === 1 ? "" : "s"} and sent (id ${data.id}).`
            : "Queued for delivery.";
        outcome.ok(result, answer.data);
        sent.unshift({ at: Date.now(), target: label, op, result, ok: true });
      } catch (err) {
        outcome.error(err);
        sent.unshift({ at: Date.now(), target: label, op, result: errorText(err), ok: false });
      }
      sent.splice(20);
      drawHistory();
    };

    const pushForm = form(
      "Push",
      "Send push",
      send,
      h("fieldset", {}, h("legend", {}, "Target"), tabs, ...Object.values(groups)),
      field("Operation", operation, "The business op clients receive; 1000 and up."),
      field("Body", body, "Sent as it is: JSON, or any text."),
    );

    return h(
      "div",
      { class: "view" },
      h("div", { class: "columns columns-wide" }, panel("Send a push", pushForm, outcome.el), panel("Sent from this tab", history)),
    );
  },
};
