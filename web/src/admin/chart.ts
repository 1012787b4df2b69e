// A small line chart over time, drawn as SVG: an area under a line, scaled
// to the window's maximum, with the current value beside the title.

import { compact, h, replace, svg } from "../shared/dom";
import type { Point } from "./metrics";

const WIDTH = 300;
const HEIGHT = 80;

export class Chart {
  readonly el: HTMLElement;
  private readonly value: HTMLElement;
  private readonly max: HTMLElement;
  private readonly span: HTMLElement;
  private readonly plot: SVGSVGElement;

  constructor(
    readonly id: string,
    title: string,
    help: string,
    private readonly unit: string,
    private readonly windowMs: number,
  ) {
    this.value = h("span", { class: "chart-value", "data-value": "" }, "–");
    this.max = h("span", { class: "chart-max" });
    this.span = h("span", {});
    this.plot = svg("svg", {
      viewBox: `0 0 ${WIDTH} ${HEIGHT}`,
      preserveAspectRatio: "none",
      class: "chart-plot",
      role: "img",
      "aria-label": title,
    });
    this.el = h(
      "figure",
      { class: "card chart", "data-chart": id, title: help },
      h("figcaption", {}, h("span", { class: "chart-title" }, title), this.value),
      this.plot,
      h("div", { class: "chart-foot" }, this.span, this.max),
    );
  }

  /**
   * Redraws from `points` (oldest first); `missing` when the server exports
   * no such series.
   */
  update(points: Point[], missing: boolean, now: number): void {
    this.el.classList.toggle("chart-missing", missing);
    if (missing) {
      this.value.textContent = "n/a";
      this.max.textContent = "not exported here";
      replace(this.plot);
      return;
    }
    const last = points.at(-1);
    this.value.textContent = last ? `${compact(last.v)}${this.unit}` : "–";
    const peak = Math.max(0, ...points.map((p) => p.v));
    const top = niceMax(peak);
    this.max.textContent = `peak ${compact(peak)}${this.unit}`;
    // The window grows with the history this tab has, from 1 minute up to `windowMs`.
    const span = Math.min(this.windowMs, Math.max(60_000, now - (points[0]?.t ?? now)));
    this.span.textContent = span < 120_000 ? `last ${Math.round(span / 1000)} s` : `last ${Math.floor(span / 60_000)} min`;
    const start = now - span;
    const x = (t: number) => ((t - start) / span) * WIDTH;
    const y = (v: number) => HEIGHT - 2 - (v / top) * (HEIGHT - 6);
    const visible = points.filter((p) => p.t >= start - 5000);
    const grid = [0.25, 0.5, 0.75].map((f) =>
      svg("line", { x1: 0, x2: WIDTH, y1: y(top * f), y2: y(top * f), class: "chart-grid" }),
    );
    if (visible.length < 2) {
      replace(this.plot, ...grid);
      return;
    }
    const line = visible.map((p) => `${x(p.t).toFixed(1)},${y(p.v).toFixed(1)}`).join(" ");
    const first = visible[0]!;
    const end = visible.at(-1)!;
    const area = `${x(first.t).toFixed(1)},${HEIGHT} ${line} ${x(end.t).toFixed(1)},${HEIGHT}`;
    replace(
      this.plot,
      ...grid,
      svg("polygon", { points: area, class: "chart-area" }),
      svg("polyline", { points: line, class: "chart-line", "vector-effect": "non-scaling-stroke" }),
    );
  }
}

/** 1, 2 or 5 times a power of ten, at least `value` (and at least 1). */
function niceMax(value: number): number {
  if (value <= 1) return 1;
  const power = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 5, 10]) {
    if (value <= step * power) return step * power;
  }
  return 10 * power;
}
