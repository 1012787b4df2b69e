// rim's demo chat (served at /demo/): sign in as a user, then chat one to
// one, in groups and in a live room, on rim's JavaScript SDK
// (sdk/js/src, bundled from its TypeScript source). A link may carry
// `?ws=<comet WebSocket URL>` (the sign-in form's Server) and
// `?heartbeat=<ms>` (the SDK's heartbeat interval; the browser tests use
// short ones so that a dead network shows within a second or two).

import { ChatApp, type Tuning } from "./chat";
import { defaultWs, savedSession, saveSession, showSignIn, type Session } from "./session";

const params = new URLSearchParams(location.search);

function tuning(): Tuning {
  const heartbeat = Number(params.get("heartbeat"));
  return Number.isFinite(heartbeat) && heartbeat >= 100 ? { heartbeat } : {};
}

async function main(): Promise<void> {
  const root = document.getElementById("app")!;
  const ws = params.get("ws") ?? (await defaultWs());
  let chat: ChatApp | null = null;

  const signIn = (error?: string, previous?: Session | null) => {
    document.title = "rim demo chat";
    showSignIn(root, { ws, previous, error }, (session) => enter(session));
  };
  const enter = (session: Session) => {
    saveSession(session);
    document.title = `User ${session.mid} · rim demo chat`;
    chat = new ChatApp(root, session, tuning(), (error) => {
      chat = null;
      signIn(error, session);
    });
  };
  window.addEventListener("pagehide", () => chat?.close());
  // Back from the browser's page cache: the client was closed on the way out.
  window.addEventListener("pageshow", (event) => {
    if (event.persisted) location.reload();
  });

  const saved = savedSession();
  // A link's server replaces the one kept from the last visit.
  if (saved && params.has("ws")) saved.ws = ws;
  if (saved) enter(saved);
  else signIn();
}

void main();
