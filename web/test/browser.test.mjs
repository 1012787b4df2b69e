// The browser tests: every *.spec.mjs beside this file, in this one process,
// so that they share one Chromium and one rim (test/harness.mjs). Run with
// `npm test` in web/ (after `cargo build --bin rim`); scripts/test.sh runs it
// after the cargo tests. A spec file registers its tests with node:test.
import { readdirSync } from "node:fs";
import { after } from "node:test";
import { shutdown } from "./harness.mjs";

after(shutdown);

const specs = readdirSync(new URL(".", import.meta.url))
  .filter((name) => name.endsWith(".spec.mjs"))
  .sort();
for (const spec of specs) {
  await import(new URL(spec, import.meta.url));
}
