// Builds rim's web pages into dist/, which the repository keeps and the rim
// binary embeds (src/web.rs): cargo never needs Node.
//
// Every folder of src/ that has an index.html is a page, served by rim at
// /<page>/: its index.html (and any other file but .ts and .css, such as an
// icon) is copied, its main.ts is bundled into app.js and
// its style.css into app.css (esbuild, minified, no source maps). src/shared/
// holds what pages share (imported, never served alone).
//
//   node build.mjs            write dist/ (each page's folder is replaced)
//   node build.mjs --check    build into a temporary folder and fail, naming
//                             the files, when dist/ differs from it (stale)
//
// The output depends only on the sources and the pinned esbuild version, so
// the check is exact.
import * as esbuild from "esbuild";
import { existsSync } from "node:fs";
import { copyFile, mkdir, mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL(".", import.meta.url));
const src = join(root, "src");
const dist = join(root, "dist");

/** The pages: folders of src/ with an index.html. */
export async function pages() {
  const entries = await readdir(src, { withFileTypes: true });
  return entries
    .filter((e) => e.isDirectory() && existsSync(join(src, e.name, "index.html")))
    .map((e) => e.name)
    .sort();
}

/** Builds every page into `out` (one folder per page, replaced). */
export async function build(out) {
  const built = await pages();
  for (const page of built) {
    const dir = join(out, page);
    await rm(dir, { recursive: true, force: true });
    await mkdir(dir, { recursive: true });
    // index.html and other static files (icons) are copied as they are.
    for (const entry of await readdir(join(src, page), { withFileTypes: true })) {
      if (entry.isFile() && !/\.(ts|css)$/.test(entry.name)) {
        await copyFile(join(src, page, entry.name), join(dir, entry.name));
      }
    }
    const entryPoints = [];
    for (const [file, name] of [["main.ts", "app"], ["style.css", "app"]]) {
      if (existsSync(join(src, page, file))) {
        entryPoints.push({ in: join(src, page, file), out: name });
      }
    }
    if (entryPoints.length === 0) continue;
    await esbuild.build({
      entryPoints,
      outdir: dir,
      bundle: true,
      minify: true,
      format: "iife",
      target: ["es2022", "chrome110", "firefox110", "safari16"],
      charset: "utf8",
      legalComments: "none",
      logLevel: "warning",
      // Files the CSS refers to (icons) are inlined: one request per page part.
      loader: { ".svg": "dataurl", ".png": "dataurl" },
    });
  }
  return built;
}

/** Every file under `dir`, as paths relative to it. */
async function files(dir) {
  if (!existsSync(dir)) return [];
  const found = [];
  for (const entry of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (entry.isFile()) found.push(relative(dir, join(entry.parentPath ?? entry.path, entry.name)));
  }
  return found.sort();
}

/** The differences between the committed dist/ and a fresh build. */
async function stale() {
  const fresh = await mkdtemp(join(tmpdir(), "rim-web-"));
  try {
    await build(fresh);
    const want = await files(fresh);
    const have = await files(dist);
    const problems = [];
    for (const file of want) {
      if (!have.includes(file)) {
        problems.push(`missing: dist/${file}`);
      } else if (!(await readFile(join(fresh, file))).equals(await readFile(join(dist, file)))) {
        problems.push(`differs: dist/${file}`);
      }
    }
    for (const file of have) {
      if (!want.includes(file)) problems.push(`not built from src/: dist/${file}`);
    }
    return problems;
  } finally {
    await rm(fresh, { recursive: true, force: true });
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  if (process.argv.includes("--check")) {
    const problems = await stale();
    if (problems.length > 0) {
      console.error(`web/dist is stale (run \`npm run build\` in web/ and commit dist/):\n  ${problems.join("\n  ")}`);
      process.exit(1);
    }
    console.log("web/dist matches a fresh build of web/src");
  } else {
    const built = await build(dist);
    console.log(`built ${built.map((p) => `dist/${p}/`).join(", ")}`);
  }
}
