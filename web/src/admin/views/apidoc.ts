// API: the operations of rim's HTTP API as its OpenAPI document
// (/openapi.json) describes them, grouped by tag, with a filter.

import { h, replace } from "../../shared/dom";
import { ApiError } from "../api";
import { errorText, input } from "../ui";
import type { Context, View } from "../view";

const METHODS = ["get", "put", "post", "delete", "patch", "head", "options"] as const;

interface Operation {
  method: string;
  path: string;
  summary: string;
  tag: string;
  protected: boolean;
}

interface OpenApi {
  openapi?: string;
  info?: { title?: string; version?: string; description?: string };
  security?: unknown[];
  paths?: Record<string, Record<string, { summary?: string; description?: string; tags?: string[]; security?: unknown[] }>>;
}

export const apidoc: View = {
  title: "API",
  render(ctx: Context): HTMLElement {
    const body = h("div", { "data-section": "openapi" }, h("p", { class: "muted" }, "Loading /openapi.json…"));
    const filter = input({ type: "search", name: "filter", placeholder: "Filter: path, method or words", "aria-label": "Filter operations" });
    let operations: Operation[] = [];
    const list = h("div");

    const drawList = () => {
      const words = filter.value.toLowerCase().split(/\s+/).filter(Boolean);
      const shown = operations.filter((op) =>
        words.every((w) => `${op.method} ${op.path} ${op.summary} ${op.tag}`.toLowerCase().includes(w)),
      );
      const tags = [...new Set(shown.map((op) => op.tag))];
      replace(
        list,
        shown.length === 0 ? h("p", { class: "empty" }, "No operation matches.") : null,
        ...tags.map((tag) =>
          h(
            "section",
            { class: "op-group" },
            h("h3", {}, tag),
            h(
              "ul",
              { class: "ops" },
              ...shown
                .filter((op) => op.tag === tag)
                .map((op) =>
                  h(
                    "li",
                    { class: "op", "data-operation": `${op.method} ${op.path}` },
                    h("span", { class: `method method-${op.method.toLowerCase()}` }, op.method),
                    h("code", { class: "op-path" }, op.path),
                    h("span", { class: "op-summary" }, op.summary),
                    op.protected ? h("span", { class: "badge", title: "Needs the bearer token when tokens are configured" }, "token") : null,
                  ),
                ),
            ),
          ),
        ),
      );
    };
    filter.addEventListener("input", drawList);

    void (async () => {
      try {
        const doc = (await ctx.api.get<OpenApi>("/openapi.json")).data;
        if (!doc || typeof doc !== "object" || !doc.paths) throw new Error("/openapi.json is not an OpenAPI document");
        operations = operationsOf(doc);
        replace(
          body,
          h(
            "div",
            { class: "api-head" },
            h("h2", {}, doc.info?.title ?? "HTTP API"),
            h("span", { class: "badge" }, `OpenAPI ${doc.openapi ?? "?"}`),
            doc.info?.version ? h("span", { class: "badge" }, `v${doc.info.version}`) : null,
            h("a", { href: "/openapi.json", class: "link", target: "_blank", rel: "noopener" }, "openapi.json"),
          ),
          doc.info?.description ? about(doc.info.description) : null,
          h("p", {}, `${operations.length} operations.`),
          filter,
          list,
        );
        drawList();
      } catch (err) {
        replace(
          body,
          err instanceof ApiError && err.status === 404
            ? h(
                "div",
                { class: "notice" },
                h("p", {}, "This server does not publish an API description: ", h("code", {}, "/openapi.json"), " answered 404."),
                h("p", { class: "muted" }, "The API itself is listed in the README (HTTP API)."),
              )
            : h("p", { class: "notice" }, `Could not load /openapi.json: ${errorText(err)}`),
        );
      }
    })();

    return h("div", { class: "view" }, h("section", { class: "card panel" }, body));
  },
};

/** The document's description: its first sentence, the rest folded away. */
function about(description: string): HTMLElement {
  const end = description.search(/[.:](\s|$)/);
  const first = end > 0 ? description.slice(0, end + 1) : description;
  const rest = description.slice(first.length).trim();
  if (!rest) return h("p", { class: "muted" }, first);
  return h("details", { class: "about muted" }, h("summary", {}, first), h("p", {}, rest));
}

function operationsOf(doc: OpenApi): Operation[] {
  const operations: Operation[] = [];
  for (const [path, item] of Object.entries(doc.paths ?? {})) {
    for (const method of METHODS) {
      const op = item[method];
      if (!op) continue;
      const security = op.security ?? doc.security ?? [];
      operations.push({
        method: method.toUpperCase(),
        path,
        summary: op.summary ?? op.description?.split("\n")[0] ?? "",
        tag: op.tags?.[0] ?? tagOf(path),
        protected: security.length > 0 && security.some((s) => s && Object.keys(s).length > 0),
      });
    }
  }
  return operations;
}

/** A group for an untagged path: its first segments. */
function tagOf(path: string): string {
  if (path.startsWith("/rim/")) return "rim";
  if (path.startsWith("/goim/")) return "goim v2";
  if (path.startsWith("/1/")) return "goim v1";
  return "other";
}
