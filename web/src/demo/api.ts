// The demo's few HTTP calls to rim's API (same origin): the mailbox's
// history and cursor, the peer's cursor for read marks, group membership.
// The connection itself is the SDK's; these stand in for what an app's own
// backend would answer. When rim wants an API token (`logic.api.tokens`),
// the sign-in form takes one and this tab keeps it in sessionStorage only.

const TOKEN_KEY = "rim.demo.apiToken";

export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

export function apiToken(): string {
  try {
    return sessionStorage.getItem(TOKEN_KEY) ?? "";
  } catch {
    return "";
  }
}

export function setApiToken(token: string): void {
  try {
    if (token) sessionStorage.setItem(TOKEN_KEY, token);
    else sessionStorage.removeItem(TOKEN_KEY);
  } catch {
    // storage refused: no token kept
  }
}

/** One JSON call; rejects with an HttpError carrying rim's message. */
export async function call<T>(method: string, path: string, body?: unknown): Promise<T> {
  const headers: Record<string, string> = {};
  const token = apiToken();
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response: Response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store",
    });
  } catch (err) {
    throw new HttpError(0, `the server is unreachable (${err instanceof Error ? err.message : String(err)})`);
  }
  const text = await response.text();
  let data: unknown = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    // not JSON: the message is the text
  }
  if (!response.ok) {
    const message =
      typeof data === "object" && data !== null && typeof (data as { message?: unknown }).message === "string"
        ? (data as { message: string }).message
        : text.trim() || response.statusText;
    throw new HttpError(response.status, message);
  }
  return data as T;
}

/** `GET /rim/v1/users/{mid}/cursor`. */
export interface Cursor {
  epoch: string;
  first: number;
  top: number;
  read: number;
  devices: Record<string, { ack: number; ts: number }>;
}

/** A page of `GET /rim/v1/users/{mid}/messages`. */
export interface Page {
  epoch: string;
  first: number;
  top: number;
  more: boolean;
  messages: { seq: number; id: string; ts: number; op: number; from: number; body: unknown; body_encoding?: string }[];
}

export const cursor = (mid: number) => call<Cursor>("GET", `/rim/v1/users/${mid}/cursor`);

/** Newest first, below seq `before`. */
export const history = (mid: number, before: number, limit = 100) =>
  call<Page>("GET", `/rim/v1/users/${mid}/messages?before=${before}&limit=${limit}`);

export const groupMembers = (gid: number) => call<{ mids: number[] }>("GET", `/rim/v1/groups/${gid}/members`);

export const addMembers = (gid: number, mids: number[]) =>
  call<{ mids: number[] }>("PUT", `/rim/v1/groups/${gid}/members`, { mids });

export const removeMembers = (gid: number, mids: number[]) =>
  call<{ mids: number[] }>("DELETE", `/rim/v1/groups/${gid}/members`, { mids });

/** A body the history gave as base64 (not one JSON text): its UTF-8 text, or a note on its size. */
export function decodeBody(message: Page["messages"][number]): unknown {
  if (message.body_encoding !== "base64" || typeof message.body !== "string") return message.body;
  const bytes = Uint8Array.from(atob(message.body), (c) => c.charCodeAt(0));
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    return `(${bytes.length} bytes of binary data)`;
  }
}
