//! The job's metric names, in one place, and the helpers that record them.
//!
//! Drops are counted per message and per comet: a room batch of 10 messages
//! that one comet did not accept adds 10 to `rim_job_dropped_total`.

use metrics::{counter, histogram};

/// Records consumed, by `type` (`push`, `room`, `broadcast`).
pub const PUSHES_TOTAL: &str = "rim_job_pushes_total";
/// Messages not delivered to a comet, by `reason` (see [`crate::JobError::reason`]).
pub const DROPPED_TOTAL: &str = "rim_job_dropped_total";
/// Messages per room batch sent to the comets.
pub const ROOM_BATCH_MESSAGES: &str = "rim_job_room_batch_messages";
/// Comets a room batch was sent to (with `[room] targets = "members"`,
/// the comets holding the room's members plus those job cannot rule out).
pub const ROOM_BATCH_COMETS: &str = "rim_job_room_batch_comets";
/// Room membership lookups, by `result` (`ok`, `failed`: the batch went to
/// every comet).
pub const ROOM_LOOKUPS_TOTAL: &str = "rim_job_room_lookups_total";
/// Keyed pushes per batch call to a comet (`PushMsgs`; a push sent alone
/// is not recorded).
pub const PUSH_BATCH_MESSAGES: &str = "rim_job_push_batch_messages";
/// Failed comet calls (every attempt, retries included), by `server`.
pub const COMET_ERRORS_TOTAL: &str = "rim_job_comet_errors_total";
/// Time to route one record into the comets' queues (the bounded enqueue:
/// backpressure from slow comets shows here).
pub const DISPATCH_SECONDS: &str = "rim_job_dispatch_seconds";

/// Stored messages not delivered live (the user's comet is gone, or the
/// comet did not take it): not lost, they wait in the mailbox for the
/// client's next sync.
pub const DEFERRED_TOTAL: &str = "rim_job_deferred_total";
/// Mailbox appends of stored messages, by `result` (`stored`, `duplicate`
/// for a redelivered record, `error` for a failed attempt, retried).
pub const MAILBOX_APPENDS_TOTAL: &str = "rim_job_mailbox_appends_total";

pub(crate) fn deferred(messages: u64) {
    counter!(DEFERRED_TOTAL).increment(messages);
}

pub(crate) fn mailbox_appends(stored: u64, duplicates: u64) {
    counter!(MAILBOX_APPENDS_TOTAL, "result" => "stored").increment(stored);
    counter!(MAILBOX_APPENDS_TOTAL, "result" => "duplicate").increment(duplicates);
}

pub(crate) fn mailbox_append_error() {
    counter!(MAILBOX_APPENDS_TOTAL, "result" => "error").increment(1);
}

pub(crate) fn pushed(kind: &'static str) {
    counter!(PUSHES_TOTAL, "type" => kind).increment(1);
}

pub(crate) fn dropped(reason: &'static str, messages: u64) {
    counter!(DROPPED_TOTAL, "reason" => reason).increment(messages);
}

pub(crate) fn comet_error(server: &str) {
    counter!(COMET_ERRORS_TOTAL, "server" => server.to_owned()).increment(1);
}

pub(crate) fn dispatch_time(elapsed: std::time::Duration) {
    histogram!(DISPATCH_SECONDS).record(elapsed.as_secs_f64());
}

pub(crate) fn room_batch(messages: usize) {
    // Batches hold at most `room.batch` messages, far below f64's exact range.
    histogram!(ROOM_BATCH_MESSAGES).record(messages as f64);
}

pub(crate) fn room_batch_comets(comets: usize) {
    // At most the number of comets, far below f64's exact range.
    histogram!(ROOM_BATCH_COMETS).record(comets as f64);
}

pub(crate) fn room_lookup(result: &'static str) {
    counter!(ROOM_LOOKUPS_TOTAL, "result" => result).increment(1);
}

pub(crate) fn push_batch(messages: usize) {
    // Batches hold at most `push_batch` pushes, far below f64's exact range.
    histogram!(PUSH_BATCH_MESSAGES).record(messages as f64);
}
