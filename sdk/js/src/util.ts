/** Small pieces the client is built from: errors, a typed event emitter, in-memory storage, ids. */

import type { SyncStorage } from "./types.js";

/**
 * A refusal with rim's code and reason: a send answered by op 5 with a code
 * other than 0, a refused join, sync or room change. Code 0 is the client's
 * own (closed, unsupported by the server, bad input).
 */
export class RimError extends Error {
  override name = "RimError";
  constructor(
    readonly code: number,
    readonly reason: string,
    /** The message id, for a refused send: send again with it to keep it stored once. */
    readonly id?: string,
  ) {
    super(code ? `${code}: ${reason}` : reason);
  }
}

type Listener<T> = (payload: T) => void;

/** A typed event emitter; a listener that throws does not stop the others. */
export class Emitter<Events extends object> {
  private listeners = new Map<keyof Events, Set<Listener<never>>>();

  /** Adds a listener; returns a function that removes it. */
  on<K extends keyof Events>(event: K, listener: Listener<Events[K]>): () => void {
    let set = this.listeners.get(event);
    if (!set) this.listeners.set(event, (set = new Set()));
    set.add(listener as Listener<never>);
    return () => this.off(event, listener);
  }

  /** Adds a listener called once. */
  once<K extends keyof Events>(event: K, listener: Listener<Events[K]>): () => void {
    const off = this.on(event, (payload) => {
      off();
      listener(payload);
    });
    return off;
  }

  off<K extends keyof Events>(event: K, listener: Listener<Events[K]>): void {
    this.listeners.get(event)?.delete(listener as Listener<never>);
  }

  protected emit<K extends keyof Events>(event: K, payload: Events[K]): void {
    for (const listener of [...(this.listeners.get(event) ?? [])]) {
      try {
        (listener as Listener<Events[K]>)(payload);
      } catch (err) {
        // Surface it without breaking the client's own state.
        queueMicrotask(() => {
          throw err;
        });
      }
    }
  }
}

/** Storage that lives as long as the page or process (the default). */
export function memoryStorage(): SyncStorage {
  const items = new Map<string, string>();
  return {
    getItem: (key) => items.get(key) ?? null,
    setItem: (key, value) => void items.set(key, value),
  };
}

/** A random id of `bytes` random bytes in hex (crypto.getRandomValues works on plain http pages too). */
export function randomHex(bytes: number): string {
  const buf = new Uint8Array(bytes);
  globalThis.crypto.getRandomValues(buf);
  return Array.from(buf, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** The user a JWT names (`sub`, else `mid`), read without verifying it; null when it names none. */
export function jwtUser(jwt: string): string | null {
  const payload = jwt.split(".")[1];
  if (!payload) return null;
  try {
    const base64 = payload.replace(/-/g, "+").replace(/_/g, "/");
    const json = new TextDecoder().decode(Uint8Array.from(atob(base64), (c) => c.charCodeAt(0)));
    const claims = JSON.parse(json) as { sub?: unknown; mid?: unknown };
    const user = claims.sub ?? claims.mid;
    return typeof user === "string" || typeof user === "number" ? String(user) : null;
  } catch {
    return null;
  }
}
