// A real `rim standalone` for the integration tests: the binary from RIM_BIN
// (default: the workspace's target/debug/rim), every listener on 127.0.0.1
// port 0, its own data directory; the addresses come from its READY line.
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { WebSocket } from "ws";
import { RimClient } from "../../dist/index.js";

const sdkDir = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
export const RIM_BIN = process.env.RIM_BIN ?? resolve(sdkDir, "../../target/debug/rim");
const DEADLINE_MS = 30_000;

/**
 * Starts rim. `config` is TOML text added to a file given with --config;
 * `args` are more flags; `data` reuses a data directory (a restart).
 */
export async function startRim({ config = "", args = [], data } = {}) {
  if (!existsSync(RIM_BIN)) {
    throw new Error(`no rim binary at ${RIM_BIN}: run \`cargo build --bin rim\` or set RIM_BIN`);
  }
  const dir = await mkdtemp(join(tmpdir(), "rim-sdk-"));
  const dataDir = data ?? join(dir, "data");
  const configPath = join(dir, "rim.toml");
  // Online counts reach logic quickly, so op 3 carries them in time.
  await writeFile(configPath, `[comet]\nonline_report_interval = "50ms"\n${config}`);
  const flags = ["standalone"];
  for (const listener of ["--http", "--tcp", "--ws"]) {
    if (!args.includes(listener)) flags.push(listener, "127.0.0.1:0");
  }
  flags.push("--data", dataDir, "--config", configPath, "--ready", ...args);
  const child = spawn(RIM_BIN, flags, { cwd: dir, stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, RUST_LOG: "warn" } });
  let stderr = "";
  child.stderr.on("data", (chunk) => {
    stderr = (stderr + chunk).slice(-20_000);
  });
  const ready = await new Promise((resolveReady, reject) => {
    let out = "";
    const timer = setTimeout(() => fail(`no READY line within ${DEADLINE_MS} ms`), DEADLINE_MS);
    const fail = (why) => {
      clearTimeout(timer);
      child.kill("SIGKILL");
      reject(new Error(`rim ${flags.join(" ")}: ${why}\nstderr:\n${stderr}`));
    };
    child.stdout.on("data", (chunk) => {
      out += chunk;
      const line = out.split("\n").find((l) => l.startsWith("READY "));
      if (line && out.includes("\n", out.indexOf(line))) {
        clearTimeout(timer);
        resolveReady(JSON.parse(line.slice("READY ".length)));
      }
    });
    child.once("exit", (code, signal) => fail(`exited (${code ?? signal}) before READY`));
  });
  child.removeAllListeners("exit");

  const base = `http://${ready.http}`;
  return {
    ready,
    dataDir,
    http: base,
    ws: `ws://${ready.ws[0]}/sub`,
    stderr: () => stderr,
    /** Calls the HTTP API: JSON in (objects) or text; answers { status, json }. */
    async api(method, path, body) {
      const init = { method };
      if (body !== undefined) init.body = typeof body === "string" ? body : JSON.stringify(body);
      const response = await fetch(base + path, init);
      const text = await response.text();
      let json;
      try {
        json = JSON.parse(text);
      } catch {
        json = text;
      }
      return { status: response.status, json };
    },
    /** Freezes and thaws the process (SIGSTOP / SIGCONT): a server that stops answering. */
    pause: () => process.kill(child.pid, "SIGSTOP"),
    resume: () => process.kill(child.pid, "SIGCONT"),
    /** Stops rim (SIGTERM, SIGKILL after 5 s) and, unless kept, removes its directory. */
    async stop({ keepData = false } = {}) {
      if (child.exitCode === null && child.signalCode === null) {
        const exited = new Promise((r) => child.once("exit", r));
        process.kill(child.pid, "SIGCONT");
        child.kill("SIGTERM");
        const timer = setTimeout(() => child.kill("SIGKILL"), 5000);
        await exited;
        clearTimeout(timer);
      }
      if (!keepData) await rm(dir, { recursive: true, force: true });
    },
  };
}

/** An SDK client for `rim` with test-friendly timings. */
export function connectClient(rim, options) {
  const client = new RimClient({
    url: rim.ws,
    WebSocket,
    heartbeatInterval: 200,
    heartbeatTimeout: 2000,
    ackInterval: 100,
    backoff: { base: 50, max: 500 },
    ...options,
  });
  client.connect();
  return client;
}

/** Resolves with the first `event` payload for which `predicate` holds; fails after `ms`. */
export function waitFor(client, event, predicate = () => true, ms = 10_000) {
  return new Promise((resolveWait, reject) => {
    const timer = setTimeout(() => {
      off();
      reject(new Error(`no ${event} event within ${ms} ms`));
    }, ms);
    const off = client.on(event, (payload) => {
      if (predicate(payload)) {
        clearTimeout(timer);
        off();
        resolveWait(payload);
      }
    });
  });
}

/** Collects every `event` payload from now on. */
export function collect(client, event) {
  const seen = [];
  client.on(event, (payload) => seen.push(payload));
  return seen;
}

/** Polls `check` (async, truthy when done) every 20 ms until `ms` pass. */
export async function eventually(check, ms = 10_000, what = "condition") {
  const deadline = Date.now() + ms;
  let last;
  while (Date.now() < deadline) {
    last = await check();
    if (last) return last;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`${what} not reached within ${ms} ms (last: ${JSON.stringify(last)})`);
}

/** A client connected (op 8 received). */
export async function connected(client) {
  if (client.state !== "connected") await waitFor(client, "state", (s) => s.state === "connected");
  return client;
}

/** A Map-backed storage, shared between client instances like localStorage between page loads. */
export function mapStorage() {
  const map = new Map();
  return { map, getItem: (k) => map.get(k) ?? null, setItem: (k, v) => void map.set(k, v) };
}

/** `promise`, or a failure naming `what` after `ms`. */
export function within(promise, ms, what) {
  let timer;
  const deadline = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: not settled within ${ms} ms`)), ms);
  });
  return Promise.race([promise, deadline]).finally(() => clearTimeout(timer));
}
