// The console's HTTP client for rim's API (same origin). It adds the bearer
// token when it holds one, and on a 401 (or a 403 naming the token) asks the
// person for a token and tries again. The token lives in sessionStorage: this
// tab only, gone when the tab closes, never in localStorage or a cookie.

export type Query = Record<string, string | number | boolean | readonly (string | number)[] | null | undefined>;

export interface RequestOptions {
  query?: Query;
  /** A string is sent as it is; anything else as JSON. */
  body?: unknown;
  /** A person asked for this: ask for a token even after they declined once. */
  interactive?: boolean;
}

export interface Answer<T> {
  status: number;
  data: T;
}

/** An API answer that is not a success, with the server's message. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly body: unknown,
  ) {
    super(message);
  }
}

/** The API wants a token and none was given. */
export class TokenNeeded extends ApiError {}

/**
 * Asks the person for a token: resolves to it, or null when they decline.
 * `reason` is the server's word on why it refused.
 */
export type TokenPrompt = (reason: string) => Promise<string | null>;

const TOKEN_KEY = "rim.admin.token";

export class Api {
  private asking: Promise<string | null> | null = null;
  /** The person declined to give a token: polls stop asking. */
  private declined = false;
  private listeners: (() => void)[] = [];

  constructor(private readonly prompt: TokenPrompt) {}

  /** The token this tab holds, if any. */
  get token(): string | null {
    try {
      return sessionStorage.getItem(TOKEN_KEY);
    } catch {
      return null;
    }
  }

  setToken(token: string | null): void {
    try {
      if (token) sessionStorage.setItem(TOKEN_KEY, token);
      else sessionStorage.removeItem(TOKEN_KEY);
    } catch {
      // Storage refused (private mode): the token lives only in this request.
    }
    if (token) this.declined = false;
    for (const listener of this.listeners) listener();
  }

  /** Called whenever the token changes. */
  onTokenChange(listener: () => void): void {
    this.listeners.push(listener);
  }

  /** Asks for a token now (the header's token button). */
  async askToken(reason: string): Promise<void> {
    const token = await this.ask(reason);
    if (token) this.setToken(token);
  }

  get<T>(path: string, options: RequestOptions = {}): Promise<Answer<T>> {
    return this.request<T>("GET", path, options);
  }

  async request<T>(method: string, path: string, options: RequestOptions = {}): Promise<Answer<T>> {
    for (let attempt = 0; ; attempt++) {
      const response = await fetch(url(path, options.query), {
        method,
        headers: this.headers(options.body),
        body: body(options.body),
        cache: "no-store",
      });
      const data = await parse(response);
      if (response.ok) return { status: response.status, data: data as T };
      const message = messageOf(data, response);
      const wantsToken =
        response.status === 401 || (response.status === 403 && /token/i.test(message));
      if (!wantsToken) throw new ApiError(response.status, message, data);
      if (attempt >= 3 || (this.declined && !options.interactive)) {
        throw new TokenNeeded(response.status, message, data);
      }
      const token = await this.ask(message);
      if (!token) {
        this.declined = true;
        throw new TokenNeeded(response.status, message, data);
      }
      this.setToken(token);
    }
  }

  /** One prompt at a time: concurrent refusals share it. */
  private ask(reason: string): Promise<string | null> {
    this.asking ??= this.prompt(reason).finally(() => {
      this.asking = null;
    });
    return this.asking;
  }

  private headers(payload: unknown): HeadersInit {
    const headers: Record<string, string> = { Accept: "application/json" };
    const token = this.token;
    if (token) headers.Authorization = `Bearer ${token}`;
    if (payload !== undefined && typeof payload !== "string") {
      headers["Content-Type"] = "application/json";
    }
    return headers;
  }
}

function url(path: string, query: Query = {}): string {
  const params = new URLSearchParams();
  for (const [name, value] of Object.entries(query)) {
    if (value === null || value === undefined || value === "") continue;
    if (Array.isArray(value)) {
      for (const item of value) params.append(name, String(item));
    } else {
      params.append(name, String(value));
    }
  }
  const search = params.toString();
  return search ? `${path}?${search}` : path;
}

function body(payload: unknown): BodyInit | undefined {
  if (payload === undefined) return undefined;
  return typeof payload === "string" ? payload : JSON.stringify(payload);
}

async function parse(response: Response): Promise<unknown> {
  const text = await response.text();
  if (text === "") return null;
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

/** The server's message: goim's `{code, message}`, v1's `{ret, message}`, rim's `{code, message}`. */
function messageOf(data: unknown, response: Response): string {
  if (data && typeof data === "object" && "message" in data) {
    const message = (data as { message: unknown }).message;
    if (typeof message === "string" && message) return message;
  }
  if (typeof data === "string" && data.trim()) return data.trim().slice(0, 300);
  return `${response.status} ${response.statusText}`.trim();
}

/**
 * The `data` of a goim envelope (`{"code": 0, "data": ..}` or v1's
 * `{"ret": 1, "data": ..}`), or an error with the envelope's message when it
 * says the call failed.
 */
export function envelopeData<T>(answer: Answer<unknown>): T {
  const body = answer.data as { code?: number; ret?: number; message?: string; data?: T } | null;
  if (body && typeof body === "object") {
    const failed = (body.code !== undefined && body.code !== 0) || (body.ret !== undefined && body.ret !== 1);
    if (failed) throw new ApiError(answer.status, body.message || "the API answered an error", body);
    return body.data as T;
  }
  throw new ApiError(answer.status, "the API answered something that is not JSON", body);
}
