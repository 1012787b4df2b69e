// A development server for the pages: serves dist/ at /<page>/ as rim does,
// rebuilds it when a file under src/ changes, and passes every other request
// (the API, /metrics, /openapi.json) to a running rim, so a page can be
// worked on without rebuilding rim.
//
//   RIM_URL=http://127.0.0.1:3111 PORT=8080 node dev.mjs    (npm run dev)
import { watch } from "node:fs";
import { readFile } from "node:fs/promises";
import { createServer } from "node:http";
import { extname, join, normalize } from "node:path";
import { fileURLToPath } from "node:url";
import { build, pages } from "./build.mjs";

const root = fileURLToPath(new URL(".", import.meta.url));
const rim = process.env.RIM_URL ?? "http://127.0.0.1:3111";
const port = Number(process.env.PORT ?? 8080);
const types = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".svg": "image/svg+xml; charset=utf-8",
  ".png": "image/png",
};

let building = build(join(root, "dist"));
let timer;
watch(join(root, "src"), { recursive: true }, () => {
  clearTimeout(timer);
  timer = setTimeout(() => {
    building = build(join(root, "dist")).then(
      (built) => (console.log("rebuilt", built.join(", ")), built),
      (err) => (console.error(err.message), []),
    );
  }, 100);
});

const served = new Set(await pages());
createServer(async (req, res) => {
  const url = new URL(req.url ?? "/", "http://dev");
  const page = url.pathname.split("/")[1] ?? "";
  if (served.has(page)) {
    await building;
    if (url.pathname === `/${page}`) {
      res.writeHead(308, { Location: `${page}/` }).end();
      return;
    }
    let file = normalize(url.pathname.slice(1));
    if (file.endsWith("/")) file += "index.html";
    try {
      const body = await readFile(join(root, "dist", file));
      res.writeHead(200, { "Content-Type": types[extname(file)] ?? "application/octet-stream", "Cache-Control": "no-cache" });
      res.end(body);
    } catch {
      res.writeHead(404, { "Content-Type": "text/plain" }).end(`not found: ${url.pathname}\n`);
    }
    return;
  }
  // Everything else goes to rim.
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  try {
    const headers = { ...req.headers };
    delete headers.host;
    const answer = await fetch(`${rim}${req.url}`, {
      method: req.method,
      headers,
      body: chunks.length ? Buffer.concat(chunks) : undefined,
    });
    const out = {};
    answer.headers.forEach((value, name) => {
      if (name !== "content-encoding" && name !== "content-length") out[name] = value;
    });
    res.writeHead(answer.status, out).end(Buffer.from(await answer.arrayBuffer()));
  } catch (err) {
    res.writeHead(502, { "Content-Type": "text/plain" }).end(`rim at ${rim} did not answer: ${err.message}\n`);
  }
}).listen(port, "127.0.0.1", () => {
  console.log(`pages on http://127.0.0.1:${port}/ (${[...served].map((p) => `/${p}/`).join(", ")}); API from ${rim}`);
});
