// rim's admin console (served at /admin/): the shell (navigation, live
// status, the token button) and a hash router over the views.

import { ago, h, replace } from "../shared/dom";
import { Api } from "./api";
import { Monitor } from "./monitor";
import { askToken } from "./ui";
import type { Context, View } from "./view";
import { apidoc } from "./views/apidoc";
import { groups } from "./views/groups";
import { mailbox } from "./views/mailbox";
import { mutes } from "./views/mutes";
import { overview } from "./views/overview";
import { push } from "./views/push";

interface Route {
  path: string;
  view: View;
  icon: string;
}

/** Navigation order; the first is the default. Icons: 24×24 SVG paths. */
const ROUTES: Route[] = [
  { path: "overview", view: overview, icon: "M3 13h8V3H3zm0 8h8v-6H3zm10 0h8V11h-8zm0-18v6h8V3z" },
  { path: "push", view: push, icon: "M2 21l21-9L2 3v7l15 2-15 2z" },
  { path: "mailbox", view: mailbox, icon: "M20 4H4a2 2 0 00-2 2v12a2 2 0 002 2h16a2 2 0 002-2V6a2 2 0 00-2-2zm0 4l-8 5-8-5V6l8 5 8-5z" },
  { path: "mutes", view: mutes, icon: "M16.5 12A4.5 4.5 0 0014 8v2.2l2.5 2.5zM19 12a7 7 0 01-.5 2.6l1.5 1.5A8.9 8.9 0 0021 12a9 9 0 00-7-8.8v2.1a7 7 0 015 6.7zM4.3 3L3 4.3 7.7 9H3v6h4l5 5v-6.7l4.3 4.2a7 7 0 01-2.3 1.2v2.1a9 9 0 003.7-1.8l2 2 1.3-1.3-9-9zM12 4L9.9 6.1 12 8.2z" },
  { path: "groups", view: groups, icon: "M16 11a3 3 0 100-6 3 3 0 000 6zm-8 0a3 3 0 100-6 3 3 0 000 6zm0 2c-2.3 0-7 1.2-7 3.5V19h14v-2.5C15 14.2 10.3 13 8 13zm8 0h-1c1.2.8 2 2 2 3.5V19h6v-2.5c0-2.3-4.7-3.5-7-3.5z" },
  { path: "api", view: apidoc, icon: "M9.4 16.6L4.8 12l4.6-4.6L8 6l-6 6 6 6zm5.2 0l4.6-4.6-4.6-4.6L16 6l6 6-6 6z" },
];

function icon(path: string): SVGSVGElement {
  const el = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  el.setAttribute("viewBox", "0 0 24 24");
  el.setAttribute("aria-hidden", "true");
  el.setAttribute("class", "icon");
  const p = document.createElementNS("http://www.w3.org/2000/svg", "path");
  p.setAttribute("d", path);
  el.append(p);
  return el;
}

function start(): void {
  const api = new Api(askToken);
  const monitor = new Monitor(api);

  const links = ROUTES.map((r) =>
    h("a", { href: `#/${r.path}`, class: "nav-link", "data-route": r.path }, icon(r.icon), h("span", {}, r.view.title)),
  );
  const title = h("h1", { class: "page-title" });
  const live = h("span", { class: "live", "data-live": "" });
  const pause = h("button", { type: "button", class: "btn btn-ghost btn-small", "aria-pressed": "false" }, "Pause");
  const tokenButton = h("button", { type: "button", class: "btn btn-ghost btn-small token-button" });
  const main = h("main", { class: "content", id: "content", tabindex: "-1" });

  const drawToken = () => {
    const has = api.token !== null;
    tokenButton.textContent = has ? "Forget token" : "Token…";
    tokenButton.title = has ? "This tab holds an API token: forget it" : "Give an API token (kept in this tab only)";
    tokenButton.classList.toggle("token-set", has);
  };
  tokenButton.addEventListener("click", () => {
    if (api.token) api.setToken(null);
    else void api.askToken("Give a token from logic.api.tokens.");
  });
  api.onTokenChange(() => {
    drawToken();
    void monitor.refresh();
  });
  drawToken();

  pause.addEventListener("click", () => {
    monitor.setPaused(!monitor.paused);
    pause.textContent = monitor.paused ? "Resume" : "Pause";
    pause.setAttribute("aria-pressed", String(monitor.paused));
  });

  const drawLive = () => {
    const error = monitor.onlineError ?? monitor.metricsError;
    live.className = `live ${monitor.paused ? "live-paused" : error ? "live-error" : "live-ok"}`;
    live.textContent = monitor.paused
      ? "Paused"
      : error
        ? "Not updating"
        : !monitor.onlineAt
          ? "Connecting…"
          : Date.now() - monitor.onlineAt < 5000
            ? "Live"
            : `Updated ${ago(monitor.onlineAt)}`;
    live.title = error ?? "";
  };
  monitor.subscribe(drawLive);
  setInterval(drawLive, 1000);

  document.body.replaceChildren(
    h(
      "div",
      { class: "shell" },
      h(
        "aside",
        { class: "sidebar" },
        h(
          "a",
          { href: "#/overview", class: "brand", "aria-label": "rim admin console" },
          h("span", { class: "brand-mark" }, "rim"),
          h("span", { class: "brand-name" }, "Admin"),
        ),
        h("nav", { "aria-label": "Sections" }, ...links),
        h("div", { class: "sidebar-foot" }, h("a", { href: "../demo/", class: "link" }, "Demo chat →")),
      ),
      h(
        "div",
        { class: "page" },
        h("header", { class: "topbar" }, title, h("div", { class: "topbar-tools" }, live, pause, tokenButton)),
        main,
      ),
    ),
  );

  let leave: (() => void)[] = [];
  const route = () => {
    for (const cleanup of leave) cleanup();
    leave = [];
    const [pathPart = "", search = ""] = location.hash.replace(/^#\/?/, "").split("?", 2);
    const [name = "", ...params] = pathPart.split("/").map(decodeURIComponent);
    const found = ROUTES.find((r) => r.path === name) ?? ROUTES[0]!;
    const ctx: Context = {
      api,
      monitor,
      query: new URLSearchParams(search),
      onLeave: (cleanup) => leave.push(cleanup),
      replaceRoute: (hash) => {
        if (location.hash !== hash) history.replaceState(null, "", hash);
      },
    };
    for (const link of links) {
      if (link.dataset.route === found.path) link.setAttribute("aria-current", "page");
      else link.removeAttribute("aria-current");
    }
    title.textContent = found.view.title;
    document.title = `${found.view.title} · rim admin`;
    replace(main, found.view.render(ctx, params));
  };
  window.addEventListener("hashchange", route);
  route();
  monitor.start();
}

start();
