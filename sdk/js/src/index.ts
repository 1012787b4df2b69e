/**
 * @rim/client: the JavaScript/TypeScript client of rim (goim framing over
 * WebSocket, reconnects, heartbeats, and IM mode: sync, acks, read marks, chat).
 */

export { RimClient } from "./client.js";
export { RimError, memoryStorage } from "./util.js";
export { weightedNodes, nodeUrls, type NodesReply, type WeightedNodesOptions } from "./nodes.js";
export { Backoff, type BackoffOptions } from "./backoff.js";
export { Op, encodeFrame, decodeFrames, decodeMessage, FrameError, HEADER_LEN, type Frame } from "./frame.js";
export {
  SyncState,
  type SyncPosition,
  type SyncBegin,
  type SyncEnd,
  type SyncRequest,
  type Incomplete,
  type StoredVerdict,
  type EndVerdict,
} from "./sync.js";
export type * from "./types.js";
