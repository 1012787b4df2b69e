// What every view of the console gets, and what it gives back.

import type { Api } from "./api";
import type { Monitor } from "./monitor";

export interface Context {
  api: Api;
  monitor: Monitor;
  /** The route's query (`#/push?room=live://1`). */
  query: URLSearchParams;
  /** Runs `cleanup` when the view is left (timers, subscriptions). */
  onLeave(cleanup: () => void): void;
  /** Goes to another route (`#/mailbox/123`) without adding to the history. */
  replaceRoute(hash: string): void;
}

export interface View {
  title: string;
  /** Builds the view; `params` are the path's segments after the view's name. */
  render(ctx: Context, params: string[]): HTMLElement;
}
