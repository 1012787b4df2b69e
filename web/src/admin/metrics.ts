// Prometheus text format (what rim's GET /metrics serves), parsed in the
// page, and the series the console charts over time.

/** One sample: a metric name, its labels and its value. */
export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/**
 * Parses the Prometheus text exposition format (version 0.0.4): one sample
 * a line, `name{label="value",...} value [timestamp]`; comments and blank
 * lines are skipped, and so is a line that does not parse.
 */
export function parsePrometheus(text: string): Sample[] {
  const samples: Sample[] = [];
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) continue;
    const sample = parseLine(line);
    if (sample) samples.push(sample);
  }
  return samples;
}

function parseLine(line: string): Sample | null {
  const nameEnd = line.search(/[{\s]/);
  if (nameEnd <= 0) return null;
  const name = line.slice(0, nameEnd);
  let i = nameEnd;
  const labels: Record<string, string> = {};
  if (line[i] === "{") {
    i++;
    for (;;) {
      while (line[i] === " " || line[i] === ",") i++;
      if (line[i] === "}") {
        i++;
        break;
      }
      const eq = line.indexOf("=", i);
      if (eq < 0 || line[eq + 1] !== '"') return null;
      const label = line.slice(i, eq).trim();
      i = eq + 2;
      let value = "";
      for (;;) {
        const c = line[i];
        if (c === undefined) return null;
        i++;
        if (c === '"') break;
        if (c === "\\") {
          const next = line[i++];
          value += next === "n" ? "\n" : (next ?? "");
        } else {
          value += c;
        }
      }
      labels[label] = value;
    }
  }
  const fields = line.slice(i).trim().split(/\s+/);
  const value = parseValue(fields[0] ?? "");
  if (value === null) return null;
  return { name, labels, value };
}

function parseValue(text: string): number | null {
  switch (text) {
    case "+Inf":
      return Infinity;
    case "-Inf":
      return -Infinity;
    case "NaN":
      return NaN;
  }
  if (text === "") return null;
  const value = Number(text);
  return Number.isNaN(value) ? null : value;
}

/** Which samples a series adds up: names, and labels they must have. */
export interface Selector {
  name: string;
  labels?: Record<string, string>;
}

/** Sums the samples that match any selector; null when none is there. */
export function sum(samples: Sample[], selectors: Selector[]): number | null {
  let total: number | null = null;
  for (const s of samples) {
    for (const sel of selectors) {
      if (s.name !== sel.name) continue;
      const labels = sel.labels ?? {};
      if (Object.entries(labels).every(([k, v]) => s.labels[k] === v)) {
        total = (total ?? 0) + s.value;
        break;
      }
    }
  }
  return total;
}

/** A charted series: a gauge as it is, or a counter as a rate per second. */
export interface SeriesSpec {
  id: string;
  title: string;
  /** What it counts, and from which metrics. */
  help: string;
  unit: string;
  kind: "gauge" | "rate";
  /** Tried in order: the first that the server exports is used. */
  sources: Selector[][];
}

export interface Point {
  t: number;
  v: number;
}

/**
 * Keeps the last `keep` points of each series, from successive scrapes.
 * A counter's rate needs two scrapes; a counter that went down (a restart)
 * starts over.
 */
export class History {
  readonly points = new Map<string, Point[]>();
  private last = new Map<string, Point>();
  /** Series the server does not export (none of their sources is there). */
  readonly missing = new Set<string>();

  constructor(
    readonly specs: SeriesSpec[],
    private readonly keep: number,
  ) {
    for (const spec of specs) this.points.set(spec.id, []);
  }

  add(samples: Sample[], t: number): void {
    for (const spec of this.specs) {
      let value: number | null = null;
      for (const source of spec.sources) {
        value = sum(samples, source);
        if (value !== null) break;
      }
      if (value === null) {
        // A counter appears on its first event: until then it is 0 when a
        // related series exists, and unknown otherwise.
        if (spec.kind === "rate" && spec.sources.some((src) => src.some((sel) => hasFamily(samples, sel.name)))) {
          value = 0;
        } else {
          this.missing.add(spec.id);
          continue;
        }
      }
      this.missing.delete(spec.id);
      const points = this.points.get(spec.id)!;
      if (spec.kind === "gauge") {
        points.push({ t, v: value });
      } else {
        const previous = this.last.get(spec.id);
        this.last.set(spec.id, { t, v: value });
        if (!previous || t <= previous.t) continue;
        const delta = value >= previous.v ? value - previous.v : value;
        points.push({ t, v: delta / ((t - previous.t) / 1000) });
      }
      if (points.length > this.keep) points.splice(0, points.length - this.keep);
    }
  }
}

/** Whether the scrape has any series of the subsystem that records `name` (its first two words). */
function hasFamily(samples: Sample[], name: string): boolean {
  const prefix = name.split("_").slice(0, 2).join("_") + "_";
  return samples.some((s) => s.name.startsWith(prefix));
}

/** What the overview charts. */
export const SERIES: SeriesSpec[] = [
  {
    id: "connections",
    title: "Connections",
    help: "Open client connections (rim_comet_connections; rim logic: rim_logic_online_connections)",
    unit: "",
    kind: "gauge",
    sources: [[{ name: "rim_comet_connections" }], [{ name: "rim_logic_online_connections" }]],
  },
  {
    id: "pushes",
    title: "Pushes / s",
    help: "Push requests, and stored messages one per user (rim_logic_pushes_total + rim_mailbox_appends_total{result=\"stored\"})",
    unit: "/s",
    kind: "rate",
    sources: [[{ name: "rim_logic_pushes_total" }, { name: "rim_mailbox_appends_total", labels: { result: "stored" } }]],
  },
  {
    id: "deliveries",
    title: "Deliveries / s",
    help: "Messages queued to client connections, one per recipient (rim_comet_enqueued_messages_total)",
    unit: "/s",
    kind: "rate",
    sources: [[{ name: "rim_comet_enqueued_messages_total" }]],
  },
  {
    id: "dropped",
    title: "Dropped / s",
    help: "Messages not delivered (rim_comet_dropped_messages_total + rim_job_dropped_total)",
    unit: "/s",
    kind: "rate",
    sources: [[{ name: "rim_comet_dropped_messages_total" }, { name: "rim_job_dropped_total" }]],
  },
  {
    id: "sent",
    title: "Client messages / s",
    help: "Messages clients sent, op 4 (rim_logic_chat_messages_total)",
    unit: "/s",
    kind: "rate",
    sources: [[{ name: "rim_logic_chat_messages_total" }]],
  },
  {
    id: "http",
    title: "API requests / s",
    help: "HTTP API requests (rim_logic_http_requests_total)",
    unit: "/s",
    kind: "rate",
    sources: [[{ name: "rim_logic_http_requests_total" }]],
  },
];
