// Mutes: a user's mutes (everything, a group, a room), setting one for a
// while or until lifted, and lifting them (/rim/v1/users/{mid}/mute). A muted
// user's sends there answer op 5 with code 403.

import { datetime, h, replace } from "../../shared/dom";
import { field, form, inlineForm, input, Outcome, panel, select, table } from "../ui";
import type { Context, View } from "../view";

interface Mutes {
  mid: number;
  mutes: { scope: string; until: string | null }[];
}

const DURATIONS: [string, string][] = [
  ["", "Until lifted"],
  ["600", "10 minutes"],
  ["3600", "1 hour"],
  ["86400", "1 day"],
  ["604800", "1 week"],
];

export const mutes: View = {
  title: "Mutes",
  render(ctx: Context, params: string[]): HTMLElement {
    const mid = input({ name: "mid", placeholder: "456", inputmode: "numeric", value: params[0] ?? "" });
    const scopeKind = select([
      ["all", "Everything"],
      ["group", "One group"],
      ["room", "One room"],
    ]);
    const scopeTarget = input({ name: "scope-target", placeholder: "group id or type://id" });
    const duration = select(DURATIONS);
    const targetField = field("Group or room", scopeTarget, "A group id (9), or a room (live://1000).");
    const outcome = new Outcome();
    const list = h("div", { "data-section": "mutes" });

    const sync = () => {
      targetField.hidden = scopeKind.value === "all";
      scopeTarget.placeholder = scopeKind.value === "group" ? "9" : "live://1000";
    };
    scopeKind.addEventListener("change", sync);
    sync();

    const user = (): string | null => {
      const text = mid.value.trim();
      if (!/^-?\d+$/.test(text) || text === "0") {
        outcome.error(new Error("User id: a whole number, not 0."));
        return null;
      }
      ctx.replaceRoute(`#/mutes/${text}`);
      return text;
    };

    const draw = (answer: Mutes) => {
      replace(
        list,
        h("h3", {}, `User ${answer.mid}`),
        table(
          ["Scope", "Until", ""],
          answer.mutes.map((m) => [
            h("code", {}, m.scope),
            m.until ? datetime(Date.parse(m.until)) : "lifted by hand",
            h(
              "button",
              { type: "button", class: "btn btn-secondary btn-small", onclick: () => void lift(String(answer.mid), m.scope) },
              "Unmute",
            ),
          ]),
          "Not muted.",
        ),
      );
    };

    const show = async () => {
      outcome.clear();
      const who = user();
      if (!who) return;
      try {
        draw((await ctx.api.get<Mutes>(`/rim/v1/users/${who}/mute`, { interactive: true })).data);
      } catch (err) {
        outcome.error(err);
      }
    };

    const mute = async () => {
      outcome.clear();
      const who = user();
      if (!who) return;
      let scope = "all";
      if (scopeKind.value !== "all") {
        const target = scopeTarget.value.trim();
        if (!target) {
          outcome.error(new Error("Give the group id or the room."));
          return;
        }
        scope = `${scopeKind.value}:${target}`;
      }
      const seconds = Number(duration.value);
      const until = seconds > 0 ? new Date(Date.now() + seconds * 1000).toISOString() : null;
      try {
        const answer = await ctx.api.request<Mutes>("PUT", `/rim/v1/users/${who}/mute`, {
          body: { until, scope },
          interactive: true,
        });
        draw(answer.data);
        outcome.ok(`User ${who} is muted (${scope})${until ? ` until ${datetime(Date.parse(until))}` : ""}.`);
      } catch (err) {
        outcome.error(err);
      }
    };

    const lift = async (who: string, scope?: string) => {
      outcome.clear();
      try {
        const answer = await ctx.api.request<Mutes>("DELETE", `/rim/v1/users/${who}/mute`, {
          query: { scope },
          interactive: true,
        });
        draw(answer.data);
        outcome.ok(scope ? `Lifted ${scope} for user ${who}.` : `Lifted every mute of user ${who}.`);
      } catch (err) {
        outcome.error(err);
      }
    };

    if (mid.value) void show();

    const liftAll = h(
      "button",
      {
        type: "button",
        class: "btn btn-secondary",
        onclick: () => {
          const who = user();
          if (who) void lift(who);
        },
      },
      "Unmute everywhere",
    );

    return h(
      "div",
      { class: "view" },
      panel(
        "User",
        inlineForm("User", "Show mutes", show, field("User id", mid)),
        h("p", { class: "muted" }, "A muted user's messages (op 4) are refused there with code 403 and the reason; pushes from the backend still reach them."),
        outcome.el,
      ),
      h(
        "div",
        { class: "columns" },
        panel("Mutes", list, h("div", { class: "actions" }, liftAll)),
        panel(
          "Mute",
          form(
            "Mute",
            "Mute",
            mute,
            h("div", { class: "grid-2" }, field("Scope", scopeKind), field("For", duration)),
            targetField,
          ),
        ),
      ),
    );
  },
};
