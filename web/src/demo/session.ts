// Who is signed in, and the sign-in screen. The user id and the room are
// kept in localStorage (the page signs in again on reload); a JWT only in
// sessionStorage (this tab), like the API token.

import { h, replace } from "../shared/dom";
import { apiToken, setApiToken } from "./api";

export interface Session {
  mid: number;
  /** JWT mode: the token (the user is its `sub` or `mid` claim). */
  jwt?: string;
  /** The live room (`type://id`). */
  room: string;
  /** The comet's WebSocket URL. */
  ws: string;
}

const SESSION_KEY = "rim.demo.session";
const JWT_KEY = "rim.demo.jwt";
export const DEFAULT_ROOM = "live://lobby";

function storageGet(storage: () => Storage, key: string): string | null {
  try {
    return storage().getItem(key);
  } catch {
    return null;
  }
}

function storageSet(storage: () => Storage, key: string, value: string | null): void {
  try {
    if (value === null) storage().removeItem(key);
    else storage().setItem(key, value);
  } catch {
    // storage refused (private mode): nothing kept
  }
}

/** The session kept by an earlier sign-in (a JWT session only in the tab that signed in). */
export function savedSession(): Session | null {
  const text = storageGet(() => localStorage, SESSION_KEY);
  if (!text) return null;
  try {
    const saved = JSON.parse(text) as { mid?: unknown; room?: unknown; ws?: unknown; jwt?: unknown };
    if (typeof saved.mid !== "number" || typeof saved.room !== "string" || typeof saved.ws !== "string") return null;
    if (saved.jwt) {
      const jwt = storageGet(() => sessionStorage, JWT_KEY);
      return jwt ? { mid: saved.mid, room: saved.room, ws: saved.ws, jwt } : null;
    }
    return { mid: saved.mid, room: saved.room, ws: saved.ws };
  } catch {
    return null;
  }
}

export function saveSession(session: Session | null): void {
  if (!session) {
    storageSet(() => localStorage, SESSION_KEY, null);
    storageSet(() => sessionStorage, JWT_KEY, null);
    return;
  }
  const { jwt, ...kept } = session;
  storageSet(() => localStorage, SESSION_KEY, JSON.stringify({ ...kept, jwt: Boolean(jwt) }));
  storageSet(() => sessionStorage, JWT_KEY, jwt ?? null);
}

/** The user a JWT names: its `sub` claim, else `mid` (as rim reads it); null when it names none. */
export function jwtUser(jwt: string): number | null {
  const parts = jwt.trim().split(".");
  if (parts.length !== 3) return null;
  try {
    const json = atob(parts[1]!.replace(/-/g, "+").replace(/_/g, "/").padEnd(Math.ceil(parts[1]!.length / 4) * 4, "="));
    const claims = JSON.parse(json) as { sub?: unknown; mid?: unknown };
    const user = claims.sub ?? claims.mid;
    const mid = typeof user === "string" && /^\d+$/.test(user) ? Number(user) : user;
    return typeof mid === "number" && Number.isSafeInteger(mid) && mid > 0 ? mid : null;
  } catch {
    return null;
  }
}

/**
 * The comet's WebSocket URL when none was given: this page's host, on the
 * WebSocket port rim's nodes API names (3102 by default; wss and 3103 on an
 * https page).
 */
export async function defaultWs(): Promise<string> {
  const secure = location.protocol === "https:";
  let port = secure ? 3103 : 3102;
  try {
    const response = await fetch("/goim/nodes/weighted?platform=web", { cache: "no-store" });
    const reply = (await response.json()) as { data?: { ws_port?: number; wss_port?: number } };
    port = (secure ? reply.data?.wss_port : reply.data?.ws_port) || port;
  } catch {
    // the default port
  }
  return `${secure ? "wss" : "ws"}://${location.hostname}:${port}/sub`;
}

let fieldIds = 0;
function field(label: string, input: HTMLInputElement | HTMLTextAreaElement, hint?: string): HTMLElement {
  const id = `f${++fieldIds}`;
  input.id = id;
  const hintEl = hint ? h("span", { class: "hint", id: `${id}-hint` }, hint) : null;
  if (hintEl) input.setAttribute("aria-describedby", hintEl.id);
  return h("div", { class: "field" }, h("label", { for: id }, label), input, hintEl);
}

/**
 * Shows the sign-in screen in `root`; `onSignIn` gets the session.
 * `error` is shown above the button (why the last sign-in failed).
 */
export function showSignIn(
  root: HTMLElement,
  options: { ws: string; previous?: Session | null; error?: string },
  onSignIn: (session: Session) => void,
): void {
  const previous = options.previous ?? null;
  const mode = { jwt: Boolean(previous?.jwt) };
  const mid = h("input", {
    type: "text",
    inputmode: "numeric",
    autocomplete: "off",
    placeholder: "e.g. 123",
    value: previous && !previous.jwt ? String(previous.mid) : "",
  });
  const jwt = h("textarea", { rows: 4, spellcheck: "false", placeholder: "eyJhbGciOi…" });
  const room = h("input", { type: "text", value: previous?.room ?? DEFAULT_ROOM, spellcheck: "false" });
  const ws = h("input", { type: "text", value: options.ws, spellcheck: "false" });
  const token = h("input", { type: "password", value: apiToken(), autocomplete: "off" });
  const error = h("div", { class: "outcome", role: "alert" });
  if (options.error) replace(error, h("p", {}, options.error));
  error.className = options.error ? "outcome outcome-error" : "outcome";

  const midField = field("User id", mid, "Any number: the server trusts the client's token (logic.auth.mode = \"trust\").");
  const jwtField = field("Token (JWT)", jwt, "Signed by your backend (rim token --mid 123 prints one); the user is its sub claim.");
  const radios = (["Trust mode", "JWT"] as const).map((label, i) => {
    const id = `mode-${i}`;
    const input = h("input", { type: "radio", name: "mode", id, value: String(i) });
    input.checked = (i === 1) === mode.jwt;
    input.addEventListener("change", () => {
      mode.jwt = i === 1;
      draw();
    });
    return [input, h("label", { for: id }, label)];
  });
  const draw = () => {
    midField.hidden = mode.jwt;
    jwtField.hidden = !mode.jwt;
  };
  draw();

  const button = h("button", { type: "submit", class: "btn btn-primary signin-button" }, "Sign in");
  const form = h(
    "form",
    { class: "form", novalidate: true },
    h("div", { class: "segmented", role: "radiogroup", "aria-label": "Sign in with" }, ...radios.flat()),
    midField,
    jwtField,
    field("Live room", room, "The room you join: its online count and its messages, live (not stored)."),
    h(
      "details",
      { class: "advanced" },
      h("summary", {}, "Connection"),
      h(
        "div",
        { class: "form" },
        field("Server", ws, "The comet's WebSocket address."),
        field("API token", token, "Only if rim's API asks for one (logic.api.tokens): history and groups. Kept in this tab only."),
      ),
    ),
    error,
    h("div", { class: "actions" }, button),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const fail = (message: string) => {
      error.className = "outcome outcome-error";
      replace(error, h("p", {}, message));
    };
    let user: number | null;
    let jwtText: string | undefined;
    if (mode.jwt) {
      jwtText = jwt.value.trim();
      user = jwtUser(jwtText);
      if (user === null) return fail("That is not a JWT naming a user (a sub or mid claim).");
    } else {
      user = /^\s*\d+\s*$/.test(mid.value) ? Number(mid.value) : null;
      if (user === null || user <= 0 || !Number.isSafeInteger(user)) return fail("The user id is a positive whole number.");
    }
    const roomText = room.value.trim();
    if (roomText && !/^[^:/\s]+:\/\/\S+$/.test(roomText)) return fail("Write the room as type://id, e.g. live://lobby.");
    const wsText = ws.value.trim();
    if (!/^wss?:\/\/\S+$/.test(wsText)) return fail("The server is a ws:// or wss:// address.");
    setApiToken(token.value.trim());
    onSignIn({ mid: user, jwt: jwtText, room: roomText, ws: wsText });
  });

  replace(
    root,
    h(
      "main",
      { class: "signin" },
      h(
        "div",
        { class: "signin-card card" },
        h("div", { class: "brand" }, h("span", { class: "brand-mark", "aria-hidden": "true" }, "rim"), h("span", { class: "brand-name" }, "rim chat")),
        h("h1", {}, "Sign in"),
        h(
          "p",
          { class: "muted" },
          "A demo chat on rim's JavaScript SDK: one to one, in groups and in a live room, with history and what you missed while offline.",
        ),
        form,
      ),
      h("p", { class: "signin-foot muted" }, "Operating rim? The ", h("a", { href: "../admin/" }, "admin console"), " shows what the server is doing."),
    ),
  );
  (mode.jwt ? jwt : mid).focus();
}
