// Groups: a group's members, adding and removing them, and a message to the
// group from the backend (/rim/v1/groups/{gid}/members and /messages). A
// group exists while it has members.

import { h, replace, words } from "../../shared/dom";
import { ApiError } from "../api";
import { field, form, inlineForm, input, Outcome, panel } from "../ui";
import type { Context, View } from "../view";

export const groups: View = {
  title: "Groups",
  render(ctx: Context, params: string[]): HTMLElement {
    const gid = input({ name: "gid", placeholder: "9", inputmode: "numeric", value: params[0] ?? "" });
    const add = input({ name: "add", placeholder: "123, 456", inputmode: "numeric" });
    const op = input({ name: "op", type: "number", value: 1000, min: 1000 });
    const body = h("textarea", { name: "body", rows: 3, spellcheck: "false", placeholder: '{"text": "hello group"}' });
    const outcome = new Outcome();
    const members = h("div", { "data-section": "members" });

    const group = (): string | null => {
      const text = gid.value.trim();
      if (!/^-?\d+$/.test(text) || text === "0") {
        outcome.error(new Error("Group id: a whole number, not 0."));
        return null;
      }
      ctx.replaceRoute(`#/groups/${text}`);
      return text;
    };

    const draw = (g: string, mids: number[]) => {
      replace(
        members,
        h("h3", {}, `Group ${g}: ${mids.length} member${mids.length === 1 ? "" : "s"}`),
        mids.length === 0
          ? h("p", { class: "empty" }, "No members: the group does not exist until someone is added.")
          : h(
              "ul",
              { class: "chips", "aria-label": "Members" },
              ...mids.map((m) =>
                h(
                  "li",
                  { class: "chip" },
                  h("a", { href: `#/mailbox/${m}`, title: "Open the mailbox" }, String(m)),
                  h(
                    "button",
                    { type: "button", class: "chip-remove", "aria-label": `Remove ${m}`, onclick: () => void change(g, "DELETE", [m]) },
                    "×",
                  ),
                ),
              ),
            ),
      );
    };

    const load = async () => {
      outcome.clear();
      const g = group();
      if (!g) return;
      try {
        const answer = await ctx.api.get<{ mids: number[] }>(`/rim/v1/groups/${g}/members`, { interactive: true });
        draw(g, answer.data.mids);
      } catch (err) {
        if (err instanceof ApiError && err.status === 404) draw(g, []);
        else outcome.error(err);
      }
    };

    const change = async (g: string, method: "PUT" | "DELETE", mids: number[]) => {
      outcome.clear();
      try {
        const answer = await ctx.api.request<{ mids: number[] }>(method, `/rim/v1/groups/${g}/members`, {
          body: { mids },
          interactive: true,
        });
        draw(g, answer.data.mids);
        outcome.ok(`${method === "PUT" ? "Added" : "Removed"} ${mids.join(", ")}.`);
      } catch (err) {
        if (err instanceof ApiError && err.status === 404) draw(g, []);
        outcome.error(err);
      }
    };

    const addMembers = async () => {
      const g = group();
      if (!g) return;
      const list = words(add.value);
      if (list.length === 0 || list.some((m) => !/^-?\d+$/.test(m))) {
        outcome.error(new Error("Members: give one or more user ids."));
        return;
      }
      await change(g, "PUT", list.map(Number));
      add.value = "";
    };

    const sendMessage = async () => {
      outcome.clear();
      const g = group();
      if (!g) return;
      let parsed: unknown;
      try {
        parsed = JSON.parse(body.value);
      } catch {
        outcome.error(new Error('Body: a JSON value, for example {"text": "hello"}.'));
        return;
      }
      try {
        const answer = await ctx.api.request<{ id: string; accepted: number }>("POST", `/rim/v1/groups/${g}/messages`, {
          body: { op: Number(op.value), body: parsed },
          interactive: true,
        });
        outcome.ok(
          `Stored for ${answer.data.accepted} member${answer.data.accepted === 1 ? "" : "s"} and sent (id ${answer.data.id}).`,
          answer.data,
        );
      } catch (err) {
        outcome.error(err);
      }
    };

    if (gid.value) void load();

    return h(
      "div",
      { class: "view" },
      panel(
        "Group",
        inlineForm("Group", "Show members", load, field("Group id", gid)),
        outcome.el,
        members,
      ),
      h(
        "div",
        { class: "columns" },
        panel("Add members", form("Add members", "Add", addMembers, field("User ids", add, "Comma or space separated."))),
        panel(
          "Message the group",
          form(
            "Group message",
            "Send to group",
            sendMessage,
            field("Operation", op),
            field("Body", body, "JSON; stored in every member's mailbox, from 0 (the backend)."),
          ),
        ),
      ),
    );
  },
};
