// Building blocks of the console's views: form fields, result boxes, tables,
// the token dialog and short notices.

import { h, replace } from "../shared/dom";
import { ApiError } from "./api";

let nextId = 0;

/** A labelled field; the label names the input for people and for tests. */
export function field(
  label: string,
  input: HTMLInputElement | HTMLTextAreaElement | HTMLSelectElement,
  hint?: string,
): HTMLElement {
  input.id ||= `f${++nextId}`;
  const hintEl = hint ? h("small", { class: "hint", id: `${input.id}-hint` }, hint) : null;
  if (hintEl) input.setAttribute("aria-describedby", hintEl.id);
  return h("div", { class: "field" }, h("label", { for: input.id }, label), input, hintEl);
}

export function input(attrs: Record<string, string | number | boolean | undefined> = {}): HTMLInputElement {
  return h("input", { type: "text", autocomplete: "off", spellcheck: "false", ...attrs });
}

export function select(options: [value: string, label: string][], attrs: Record<string, string> = {}): HTMLSelectElement {
  return h("select", attrs, ...options.map(([value, label]) => h("option", { value }, label)));
}

export function button(
  label: string,
  onclick: (event: Event) => void,
  kind: "primary" | "secondary" | "danger" | "ghost" = "secondary",
  attrs: Record<string, string> = {},
): HTMLButtonElement {
  return h("button", { type: "button", class: `btn btn-${kind}`, onclick, ...attrs }, label);
}

/**
 * A form whose submit button (labelled `submit`) runs `action`, disabled
 * while it runs; Enter in a field submits too.
 */
export function form(
  name: string,
  submit: string,
  action: () => Promise<void>,
  ...children: (Node | null)[]
): HTMLFormElement {
  return formOf("form", name, submit, action, children);
}

/** A one-line form: its fields and the button side by side (a lookup by id). */
export function inlineForm(
  name: string,
  submit: string,
  action: () => Promise<void>,
  ...children: (Node | null)[]
): HTMLFormElement {
  return formOf("form form-inline", name, submit, action, children);
}

function formOf(
  className: string,
  name: string,
  submit: string,
  action: () => Promise<void>,
  children: (Node | null)[],
): HTMLFormElement {
  const submitButton = h("button", { type: "submit", class: "btn btn-primary" }, submit);
  const el = h(
    "form",
    { class: className, "aria-label": name },
    ...children,
    h("div", { class: "actions" }, submitButton),
  );
  el.addEventListener("submit", (event) => {
    event.preventDefault();
    if (!submitButton.disabled) void busy(submitButton, action);
  });
  return el;
}

/** A panel with a title, for one part of a view. */
export function panel(title: string, ...children: (Node | string | null)[]): HTMLElement {
  return h("section", { class: "card panel" }, h("h2", {}, title), ...children);
}

/** Where an action's outcome shows: success, error, or empty. */
export class Outcome {
  readonly el = h("div", { class: "outcome", role: "status", "aria-live": "polite" });

  ok(message: string, detail?: unknown): void {
    this.show("ok", message, detail);
  }

  error(err: unknown): void {
    const message = errorText(err);
    const detail = err instanceof ApiError ? err.body : undefined;
    this.show("error", message, detail);
  }

  clear(): void {
    this.el.className = "outcome";
    replace(this.el);
  }

  private show(kind: "ok" | "error", message: string, detail?: unknown): void {
    this.el.className = `outcome outcome-${kind}`;
    replace(
      this.el,
      h("p", {}, message),
      detail !== undefined && detail !== null
        ? h("details", {}, h("summary", {}, "Response"), h("pre", {}, pretty(detail)))
        : null,
    );
  }
}

/** What went wrong, in a sentence. */
export function errorText(err: unknown): string {
  if (err instanceof ApiError) return `${err.status}: ${err.message}`;
  if (err instanceof TypeError) return `The server could not be reached (${err.message}).`;
  if (err instanceof Error) return err.message;
  return String(err);
}

export function pretty(value: unknown): string {
  return typeof value === "string" ? value : JSON.stringify(value, null, 2);
}

/** A table with a header row; `rows` are cells. An empty table says `empty`. */
export function table(
  headers: string[],
  rows: (Node | string | number)[][],
  empty: string,
  attrs: Record<string, string> = {},
): HTMLElement {
  if (rows.length === 0) return h("p", { class: "empty", ...attrs }, empty);
  return h(
    "div",
    { class: "table-wrap", ...attrs },
    h(
      "table",
      {},
      h("thead", {}, h("tr", {}, ...headers.map((t) => h("th", { scope: "col" }, t)))),
      h(
        "tbody",
        {},
        ...rows.map((cells) =>
          h("tr", {}, ...cells.map((c, i) => h("td", { "data-label": headers[i] ?? "" }, c))),
        ),
      ),
    ),
  );
}

/** Runs `action` with `btn` disabled meanwhile. */
export async function busy(btn: HTMLButtonElement, action: () => Promise<void>): Promise<void> {
  btn.disabled = true;
  btn.classList.add("busy");
  try {
    await action();
  } finally {
    btn.disabled = false;
    btn.classList.remove("busy");
  }
}

/** A short notice at the bottom of the screen. */
export function toast(message: string, kind: "ok" | "error" = "ok"): void {
  let host = document.getElementById("toasts");
  if (!host) {
    host = h("div", { id: "toasts", "aria-live": "polite" });
    document.body.append(host);
  }
  const note = h("div", { class: `toast toast-${kind}`, role: kind === "error" ? "alert" : "status" }, message);
  host.append(note);
  setTimeout(() => note.remove(), 4000);
}

/**
 * Asks for the API token in a modal dialog; resolves to the token, or null
 * when the person cancels.
 */
export function askToken(reason: string): Promise<string | null> {
  return new Promise((resolve) => {
    const token = input({ type: "password", name: "token", autocomplete: "off", required: true });
    const dialog = h(
      "dialog",
      { class: "card dialog", "aria-labelledby": "token-title" },
      h(
        "form",
        { method: "dialog" },
        h("h2", { id: "token-title" }, "API token"),
        h("p", {}, "This server wants a bearer token for its API (", h("code", {}, "logic.api.tokens"), ")."),
        h("p", { class: "dialog-reason" }, reason),
        field("Token", token, "Kept in this tab only (sessionStorage), gone when the tab closes."),
        h(
          "div",
          { class: "actions" },
          h("button", { type: "submit", value: "ok", class: "btn btn-primary" }, "Use token"),
          h("button", { type: "submit", value: "cancel", class: "btn btn-ghost", formnovalidate: true }, "Cancel"),
        ),
      ),
    );
    dialog.addEventListener("close", () => {
      const value = dialog.returnValue === "ok" ? token.value.trim() : "";
      dialog.remove();
      resolve(value || null);
    });
    document.body.append(dialog);
    dialog.showModal();
    token.focus();
  });
}
