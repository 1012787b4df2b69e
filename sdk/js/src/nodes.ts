/**
 * Choosing the comet: a URL provider backed by rim's `/goim/nodes/weighted`
 * (the comets logic offers clients, by weight).
 */

export interface WeightedNodesOptions {
  /** Asked for as `platform=`; default `web` (nodes are host names, ports from `ws_port`/`wss_port`). */
  platform?: string;
  /** wss on `wss_port` instead of ws on `ws_port`; default: true on an https page. */
  secure?: boolean;
  /** The WebSocket path; default `/sub`. */
  path?: string;
  /** The fetch implementation; default `globalThis.fetch`. */
  fetch?: typeof globalThis.fetch;
}

/** `data` of goim's NodesReply (zero values are left out). */
export interface NodesReply {
  domain?: string;
  tcp_port?: number;
  ws_port?: number;
  wss_port?: number;
  heartbeat?: number;
  heartbeat_max?: number;
  nodes?: string[];
  backoff?: { max_delay?: number; base_delay?: number; factor?: number; jitter?: number };
}

/** Builds the WebSocket URL of each node of a NodesReply, in the reply's (weighted) order. */
export function nodeUrls(reply: NodesReply, options: { secure?: boolean; path?: string } = {}): string[] {
  const secure = options.secure ?? globalThis.location?.protocol === "https:";
  const port = secure ? reply.wss_port : reply.ws_port;
  const path = options.path ?? "/sub";
  const nodes = reply.nodes?.length ? reply.nodes : reply.domain ? [reply.domain] : [];
  return nodes.map((node) => {
    // A node with its own port (`host:port`, `[v6]:port`) keeps it.
    const hasPort = /^\[.*\]:\d+$|^[^:]+:\d+$/.test(node);
    const host = hasPort || !port ? node : `${node}:${port}`;
    return `${secure ? "wss" : "ws"}://${host}${path}`;
  });
}

/**
 * A `url` option that asks `api` (rim's HTTP base, e.g. `https://im.example.com`)
 * for the weighted nodes before each connect, and takes the next of them
 * after each failure, so a dead comet is skipped.
 */
export function weightedNodes(api: string, options: WeightedNodesOptions = {}): () => Promise<string> {
  let turn = 0;
  return async () => {
    const fetcher = options.fetch ?? globalThis.fetch;
    const query = new URLSearchParams({ platform: options.platform ?? "web" });
    const response = await fetcher(`${api.replace(/\/$/, "")}/goim/nodes/weighted?${query}`);
    if (!response.ok) throw new Error(`nodes: HTTP ${response.status}`);
    const reply = (await response.json()) as { code?: number; message?: string; data?: NodesReply };
    if (reply.code !== 0 || !reply.data) throw new Error(`nodes: ${reply.message || "no data"}`);
    const urls = nodeUrls(reply.data, options);
    if (urls.length === 0) throw new Error("nodes: no comet offered");
    return urls[turn++ % urls.length]!;
  };
}
