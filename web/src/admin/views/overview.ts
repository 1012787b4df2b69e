// Overview: the numbers an operator looks at first (connections, IPs,
// comets, rooms), charts over the last minutes, the busiest rooms and the
// comets.

import { ago, compact, h, num, replace } from "../../shared/dom";
import { Chart } from "../chart";
import { SERIES } from "../metrics";
import { WINDOW_MS } from "../monitor";
import { table } from "../ui";
import type { Context, View } from "../view";

const TOP_ROOMS = 10;

export const overview: View = {
  title: "Overview",
  render(ctx: Context): HTMLElement {
    const stat = (id: string, label: string) => {
      const value = h("span", { class: "stat-value", "data-stat": id }, "–");
      return { value, el: h("div", { class: "card stat" }, h("span", { class: "stat-label" }, label), value) };
    };
    const stats = {
      connections: stat("connections", "Connections"),
      ips: stat("ips", "Unique IPs"),
      comets: stat("comets", "Comets"),
      rooms: stat("rooms", "Rooms"),
    };
    const charts = SERIES.map((s) => new Chart(s.id, s.title, s.help, s.unit, WINDOW_MS));
    const status = h("p", { class: "notice", hidden: true });
    const rooms = h("div", { "data-section": "rooms" });
    const comets = h("div", { "data-section": "comets" });

    const draw = () => {
      const { online, history } = ctx.monitor;
      const now = Date.now();
      const problems = [ctx.monitor.onlineError, ctx.monitor.metricsError].filter(Boolean);
      status.hidden = problems.length === 0;
      status.textContent = problems.join(" ");
      if (online) {
        stats.connections.value.textContent = num(online.connections);
        stats.ips.value.textContent = num(online.ips);
        stats.comets.value.textContent = num(online.comets.length);
        stats.rooms.value.textContent = num(online.rooms.length);
        const busiest = online.rooms[0]?.count ?? 0;
        replace(
          rooms,
          table(
            ["Room", "Online", ""],
            online.rooms.slice(0, TOP_ROOMS).map((r) => [
              h("code", {}, r.room),
              num(r.count),
              h(
                "div",
                { class: "row-actions" },
                h("span", { class: "bar" }, h("span", { class: "bar-fill", "data-width": share(r.count, busiest) })),
                h("a", { href: `#/push?room=${encodeURIComponent(r.room)}`, class: "link" }, "Push"),
              ),
            ]),
            "No room has members.",
          ),
        );
        replace(
          comets,
          table(
            ["Comet", "Connections", "IPs", "Weight", "Addresses", "Report"],
            online.comets.map((c) => [
              h("strong", {}, c.hostname),
              num(Number(c.metadata.conn_count ?? 0)),
              num(Number(c.metadata.ip_count ?? 0)),
              c.metadata.weight ?? "",
              c.addrs.length ? h("span", { class: "addrs" }, ...c.addrs.map((a) => h("code", {}, a))) : "–",
              h("span", { class: "nowrap" }, c.latest_timestamp ? ago(c.latest_timestamp * 1000, now) : "–"),
            ]),
            "No comet has reported yet.",
          ),
        );
        // Widths through the CSSOM: the page's policy allows no inline style attributes.
        for (const fill of rooms.querySelectorAll<HTMLElement>(".bar-fill")) {
          fill.style.width = `${fill.dataset.width}%`;
        }
      }
      for (const chart of charts) {
        chart.update(history.points.get(chart.id) ?? [], history.missing.has(chart.id), now);
      }
    };
    ctx.onLeave(ctx.monitor.subscribe(draw));
    draw();

    return h(
      "div",
      { class: "view" },
      status,
      h("div", { class: "stats" }, ...Object.values(stats).map((s) => s.el)),
      h("div", { class: "charts" }, ...charts.map((c) => c.el)),
      h(
        "div",
        { class: "columns" },
        h("section", { class: "card panel" }, h("h2", {}, "Top rooms"), rooms),
        h("section", { class: "card panel" }, h("h2", {}, "Comets"), comets),
      ),
      h("p", { class: "footnote" }, `Online counts come from the comets' reports (every few seconds); charts from /metrics, ${compact(WINDOW_MS / 60000)} minutes kept in this tab.`),
    );
  },
};

function share(count: number, busiest: number): string {
  return busiest > 0 ? String(Math.max(2, Math.round((count / busiest) * 100))) : "0";
}
