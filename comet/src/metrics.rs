//! Every metric the comet records, by name, in one place.
//!
//! Hot loops (fan-out to many sessions) count locally and record once per call,
//! because each labelled macro call looks the metric up in the recorder.

use metrics::{counter, gauge};

/// Gauge: open client connections (accepted, authenticated or not).
pub(crate) const CONNECTIONS: &str = "rim_comet_connections";
/// Gauge: authenticated sessions registered in buckets.
pub(crate) const SESSIONS: &str = "rim_comet_sessions";
/// Gauge: rooms with at least one local member (updated by the online report).
pub(crate) const ROOMS: &str = "rim_comet_rooms";
/// Counter `{transport}`: accepted connections.
pub(crate) const ACCEPTED: &str = "rim_comet_accepted_total";
/// Counter `{transport}`: failed `accept` calls.
pub(crate) const ACCEPT_ERRORS: &str = "rim_comet_accept_errors_total";
/// Counter `{reason}`: closed connections, by why they closed.
pub(crate) const DISCONNECTS: &str = "rim_comet_disconnects_total";
/// Counter: sessions disconnected because their outbound queue was full.
pub(crate) const SLOW_CLIENT_DISCONNECTS: &str = "rim_comet_slow_client_disconnects_total";
/// Counter `{reason}`: messages that were not delivered.
pub(crate) const DROPPED_MESSAGES: &str = "rim_comet_dropped_messages_total";
/// Counter `{kind}`: push requests received (`keys`, `broadcast`, `room`).
pub(crate) const PUSH_REQUESTS: &str = "rim_comet_push_requests_total";
/// Counter `{kind}`: messages put into session queues.
pub(crate) const ENQUEUED_MESSAGES: &str = "rim_comet_enqueued_messages_total";
/// Counter `{kind}`: recipients skipped because the op is not in their accepts.
pub(crate) const FILTERED_MESSAGES: &str = "rim_comet_filtered_messages_total";
/// Counter `{call}`: failed calls to logic (refused, unavailable or timed out).
pub(crate) const LOGIC_ERRORS: &str = "rim_comet_logic_errors_total";
/// Counter `{result}`: online reports sent to logic (`ok`, `error`).
pub(crate) const ONLINE_REPORTS: &str = "rim_comet_online_reports_total";
/// Counter `{op, result}`: op 24 (`join`) and op 26 (`leave`) answered, by
/// `result`: `ok`, or the refusal (`bad_room_id`, `already_in`, `not_in`,
/// `full`).
pub(crate) const ROOM_REQUESTS: &str = "rim_comet_room_requests_total";
/// Counter `{result}`: room announcements sent to logic before a join
/// (`ok`, `error`, `unimplemented` for a logic that does not take them).
pub(crate) const ROOM_ANNOUNCES: &str = "rim_comet_room_announces_total";
/// Counter `{transport}`: TLS handshakes that failed (protocol error or
/// handshake deadline) on the `tls` and `wss` listeners. A client that just
/// closes or resets before finishing is not counted (as on plain TCP).
pub(crate) const TLS_HANDSHAKE_FAILURES: &str = "rim_comet_tls_handshake_failures_total";
/// Counter `{result}`: certificate reloads after start (`ok`, `error`).
pub(crate) const TLS_RELOADS: &str = "rim_comet_tls_reloads_total";

/// Stored frames offered live to IM sessions, by `outcome`: `delivered`,
/// `held` (merged after a sync), `duplicate` (seq already sent: dropped),
/// `deferred` (session behind: left in the mailbox for its next sync).
pub(crate) const IM_STORED_FRAMES: &str = "rim_comet_im_stored_frames_total";
/// Syncs answered (op 18 or `since`), by `result`: `complete`,
/// `incomplete` (`complete: false`), `bad_request`, `error`.
pub(crate) const IM_SYNCS: &str = "rim_comet_im_syncs_total";
/// Device acks received (op 21), before batching.
pub(crate) const IM_ACKS: &str = "rim_comet_im_acks_total";
/// Read marks received (op 22).
pub(crate) const IM_READS: &str = "rim_comet_im_reads_total";
/// Messages IM sessions sent (op 4), by the op 5 `code` answered (0:
/// accepted; 503 also when logic could not be asked).
pub(crate) const IM_SENDS: &str = "rim_comet_im_sends_total";

/// Dropped-message reason: the session's queue was full (slow client).
pub(crate) const DROP_SLOW_CLIENT: &str = "slow_client";
/// Dropped-message reason: the session had been kicked by a newer same-key session.
pub(crate) const DROP_KICKED: &str = "kicked";
/// Dropped-message reason: the session was already closing.
pub(crate) const DROP_SESSION_CLOSED: &str = "session_closed";
/// Dropped-message reason: the connection ended with messages still queued.
pub(crate) const DROP_CONNECTION_CLOSED: &str = "connection_closed";
/// Dropped-message reason: a keyed push named a key with no session here.
pub(crate) const DROP_NO_SESSION: &str = "no_session";

pub(crate) fn disconnect(reason: &'static str) {
    counter!(DISCONNECTS, "reason" => reason).increment(1);
}

pub(crate) fn dropped(reason: &'static str, messages: u64) {
    if messages > 0 {
        counter!(DROPPED_MESSAGES, "reason" => reason).increment(messages);
    }
}

pub(crate) fn im_frame(outcome: &'static str) {
    counter!(IM_STORED_FRAMES, "outcome" => outcome).increment(1);
}

pub(crate) fn im_duplicate() {
    im_frame("duplicate");
}

pub(crate) fn im_send(code: u32) {
    counter!(IM_SENDS, "code" => code.to_string()).increment(1);
}

pub(crate) fn im_sync(result: &'static str) {
    counter!(IM_SYNCS, "result" => result).increment(1);
}

pub(crate) fn slow_client(lost: u64) {
    counter!(SLOW_CLIENT_DISCONNECTS).increment(1);
    dropped(DROP_SLOW_CLIENT, lost);
}

pub(crate) fn connection_opened(transport: &'static str) {
    counter!(ACCEPTED, "transport" => transport).increment(1);
    gauge!(CONNECTIONS).increment(1.0);
}

pub(crate) fn connection_closed() {
    gauge!(CONNECTIONS).decrement(1.0);
}

pub(crate) fn logic_error(call: &'static str) {
    counter!(LOGIC_ERRORS, "call" => call).increment(1);
}

pub(crate) fn room_announce(result: &'static str) {
    counter!(ROOM_ANNOUNCES, "result" => result).increment(1);
}

pub(crate) fn tls_handshake_failed(transport: &'static str) {
    counter!(TLS_HANDSHAKE_FAILURES, "transport" => transport).increment(1);
}

pub(crate) fn tls_reload(result: &'static str) {
    counter!(TLS_RELOADS, "result" => result).increment(1);
}
