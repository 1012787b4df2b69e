// What the browser tests share: a real `rim standalone` (the workspace's
// debug binary) on port 0, and one headless Debian Chromium driven by
// playwright-core. Both start once, on first use, and stop at `shutdown()`
// (test/browser.test.mjs runs every *.spec.mjs in one process, then that).
//
//   const server = await rim();            // the shared server
//   const page = await newPage(server);     // a page in a fresh context (closed by closeContexts)
//   const other = await rim({ config });    // a server of its own (stopped after the run)
//
// The rim binary: $RIM_BIN, else $CARGO_TARGET_DIR/debug/rim, else
// <repo>/target/debug/rim. The browser: $CHROMIUM, else /usr/bin/chromium.
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const repo = resolve(fileURLToPath(new URL("../..", import.meta.url)));

/** The flags Chromium runs with: no sandbox (root in CI), nothing from the network. */
export const CHROMIUM_ARGS = [
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

/**
 * Settings every test server gets on top of its own: online counts reach
 * the console within about a second instead of 10-20 s.
 */
const FAST_ONLINE = `
[comet]
online_report_interval = "250ms"

[logic]
online_refresh = "250ms"
`;

export function rimBinary() {
  if (process.env.RIM_BIN) return process.env.RIM_BIN;
  const target = process.env.CARGO_TARGET_DIR ? resolve(repo, process.env.CARGO_TARGET_DIR) : join(repo, "target");
  return join(target, "debug", "rim");
}

const cleanups = [];
/** Closes the browser and stops every server started here. */
export async function shutdown() {
  while (cleanups.length > 0) await cleanups.pop()();
}

/**
 * Starts `rim standalone` in a fresh data directory on 127.0.0.1 port 0
 * and resolves once it printed its READY line, with its addresses:
 * `{ http, url, tcp, ws, stop() }` (`url` is `http://<http>`). `config` is
 * TOML appended to the test settings (sections of standalone.example.toml;
 * `[logic]` and `[comet]` keys go in `logicConfig` / `cometConfig`).
 */
export async function startRim({ logicConfig = "", cometConfig = "", config = "" } = {}) {
  const binary = rimBinary();
  if (!existsSync(binary)) {
    throw new Error(`no rim binary at ${binary}: build it first (cargo build --bin rim), or set RIM_BIN`);
  }
  const dir = await mkdtemp(join(tmpdir(), "rim-browser-"));
  const file = join(dir, "rim.toml");
  const text = FAST_ONLINE.replace("[comet]\n", `[comet]\n${cometConfig}\n`).replace("[logic]\n", `[logic]\n${logicConfig}\n`);
  await writeFile(file, `${text}\n${config}\n`);
  const args = [
    "standalone",
    "--ready",
    "--config", file,
    "--data", join(dir, "data"),
    "--http", "127.0.0.1:0",
    "--tcp", "127.0.0.1:0",
    "--ws", "127.0.0.1:0",
  ];
  const child = spawn(binary, args, {
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, RUST_LOG: process.env.RUST_LOG ?? "warn", NO_COLOR: "1" },
  });
  let stderr = "";
  child.stderr.setEncoding("utf8");
  child.stderr.on("data", (chunk) => {
    stderr = (stderr + chunk).slice(-8000);
    if (process.env.RIM_LOG) process.stderr.write(chunk);
  });
  const exited = new Promise((done) => child.once("exit", (code, signal) => done({ code, signal })));
  const ready = await new Promise((resolveReady, reject) => {
    let out = "";
    const timer = setTimeout(() => reject(new Error(`rim printed no READY line within 30 s; stderr:\n${stderr}`)), 30_000);
    child.stdout.setEncoding("utf8");
    child.stdout.on("data", (chunk) => {
      out += chunk;
      const line = out.split("\n").find((l) => l.startsWith("READY "));
      if (line) {
        clearTimeout(timer);
        resolveReady(JSON.parse(line.slice("READY ".length)));
      }
    });
    void exited.then(({ code, signal }) => {
      clearTimeout(timer);
      reject(new Error(`rim exited (${signal ?? code}) before it was ready; stderr:\n${stderr}`));
    });
  });
  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    child.kill("SIGTERM");
    const killer = setTimeout(() => child.kill("SIGKILL"), 10_000);
    await exited;
    clearTimeout(killer);
    await rm(dir, { recursive: true, force: true });
  };
  cleanups.push(stop);
  return {
    ...ready,
    url: `http://${ready.http}`,
    /** The last 8 KB rim wrote to stderr (its logs), for failure messages. */
    logs: () => stderr,
    stop,
  };
}

let shared = null;
/** The server most tests share (started on first use). */
export function rim() {
  shared ??= startRim();
  return shared;
}

let browserPromise = null;
/** The one browser of the run (launched on first use). */
export function browser() {
  browserPromise ??= (async () => {
    const executablePath = process.env.CHROMIUM ?? "/usr/bin/chromium";
    if (!existsSync(executablePath)) {
      throw new Error(`no Chromium at ${executablePath}: apt-get install chromium (scripts/test.sh does), or set CHROMIUM`);
    }
    // A fresh temporary profile per launch (playwright's default).
    const launched = await chromium.launch({ executablePath, headless: true, args: CHROMIUM_ARGS });
    cleanups.push(() => launched.close());
    return launched;
  })();
  return browserPromise;
}

const contexts = new Set();
/** Closes every context `newPage` opened (a spec's `afterEach`), so no page keeps polling. */
export async function closeContexts() {
  await Promise.all([...contexts].map((ctx) => ctx.close()));
}

/**
 * A page in a fresh browser context (its own storage, like another person),
 * at `path` of `server`. Pass `context` options (viewport, offline, ...) as
 * playwright's `browser.newContext` takes them. The page fails the test on
 * an uncaught error and records console errors in `page.errors`.
 */
export async function newPage(server, path = "/admin/", context = {}) {
  const ctx = await (await browser()).newContext({ baseURL: server.url, ...context });
  contexts.add(ctx);
  ctx.once("close", () => contexts.delete(ctx));
  const page = await ctx.newPage();
  page.errors = [];
  page.on("pageerror", (err) => page.errors.push(`uncaught: ${err.message}`));
  page.on("console", (msg) => {
    if (msg.type() === "error") page.errors.push(`console: ${msg.text()}`);
  });
  // Nothing may come from anywhere but the server under test.
  await ctx.route(
    (url) => url.host !== new URL(server.url).host && url.protocol.startsWith("http"),
    (route) => {
      page.errors.push(`request outside the server: ${route.request().url()}`);
      return route.abort();
    },
  );
  if (path !== null) await page.goto(path);
  return page;
}

/** An HTTP call to `server`'s API from Node (JSON in, JSON out). */
export async function api(server, method, path, body, headers = {}) {
  const response = await fetch(`${server.url}${path}`, {
    method,
    headers: body === undefined ? headers : { "Content-Type": "application/json", ...headers },
    body: body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body),
  });
  const text = await response.text();
  let json = null;
  try {
    json = JSON.parse(text);
  } catch {
    // not JSON: the text is in `text`
  }
  return { status: response.status, json, text, headers: response.headers };
}

/** Polls `check` (sync or async) until it returns a truthy value, or fails after `timeoutMs`. */
export async function eventually(check, timeoutMs = 10_000, what = "the condition") {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    try {
      const value = await check();
      if (value) return value;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`${what} did not hold within ${timeoutMs} ms${last ? `: ${last.message}` : ""}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
