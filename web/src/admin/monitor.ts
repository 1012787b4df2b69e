// The live state of the server, polled while the console is open: the
// online API (connections, IPs, rooms, comets) every few seconds, and
// /metrics for the charts. Views subscribe to its updates; it keeps polling
// on every view, so the charts have history whichever view was open.

import { Api, envelopeData, TokenNeeded } from "./api";
import { History, parsePrometheus, SERIES } from "./metrics";
import { errorText } from "./ui";

export interface Instance {
  hostname: string;
  addrs: string[];
  latest_timestamp: number;
  metadata: Record<string, string>;
}

export interface Room {
  room: string;
  count: number;
}

export interface Online {
  connections: number;
  ips: number;
  comets: Instance[];
  /** Every room with members, busiest first. */
  rooms: Room[];
}

export const POLL_MS = 2000;
/** The charts' window. */
export const WINDOW_MS = 5 * 60 * 1000;

export class Monitor {
  online: Online | null = null;
  onlineAt = 0;
  onlineError: string | null = null;
  metricsError: string | null = null;
  readonly history = new History(SERIES, WINDOW_MS / POLL_MS + 2);
  paused = false;
  private listeners = new Set<() => void>();
  private timer: number | undefined;
  /** The poll in flight: a refresh during it waits for it instead of starting another. */
  private polling: Promise<void> | null = null;

  constructor(private readonly api: Api) {}

  start(): void {
    void this.tick();
  }

  subscribe(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  setPaused(paused: boolean): void {
    this.paused = paused;
    this.emit();
    if (!paused) void this.tick();
  }

  /** Polls now. */
  async refresh(): Promise<void> {
    await this.tick();
  }

  private tick(): Promise<void> {
    this.polling ??= (async () => {
      clearTimeout(this.timer);
      try {
        if (!this.paused && !document.hidden) {
          await Promise.all([this.pollOnline(), this.pollMetrics()]);
          this.emit();
        }
      } finally {
        this.polling = null;
        this.timer = window.setTimeout(() => void this.tick(), POLL_MS);
      }
    })();
    return this.polling;
  }

  private emit(): void {
    for (const listener of this.listeners) listener();
  }

  private async pollOnline(): Promise<void> {
    try {
      const [total, instances, rooms] = await Promise.all([
        this.api.get("/goim/online/total").then((a) => envelopeData<{ conn_count: number; ip_count: number }>(a)),
        this.api.get("/goim/nodes/instances").then((a) => envelopeData<Instance[] | null>(a)),
        this.api
          .get("/1/count", { query: { type: "room" } })
          .then((a) => envelopeData<{ RoomId: string; Count: number }[] | null>(a)),
      ]);
      this.online = {
        connections: total.conn_count,
        ips: total.ip_count,
        comets: instances ?? [],
        rooms: (rooms ?? [])
          .map((r) => ({ room: r.RoomId, count: r.Count }))
          .sort((a, b) => b.count - a.count || a.room.localeCompare(b.room)),
      };
      this.onlineAt = Date.now();
      this.onlineError = null;
    } catch (err) {
      this.onlineError = err instanceof TokenNeeded ? "A token is needed to read the online counts." : errorText(err);
    }
  }

  private async pollMetrics(): Promise<void> {
    try {
      const headers: Record<string, string> = {};
      if (this.api.token) headers.Authorization = `Bearer ${this.api.token}`;
      const response = await fetch("/metrics", { headers, cache: "no-store" });
      if (!response.ok) throw new Error(`/metrics answered ${response.status}`);
      this.history.add(parsePrometheus(await response.text()), Date.now());
      this.metricsError = null;
    } catch (err) {
      this.metricsError = errorText(err);
    }
  }
}
