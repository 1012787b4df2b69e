//! Why a push record was not delivered, and the reason label each case is
//! counted under in `rim_job_dropped_total`.

/// Why a record, or one comet's part of it, was not delivered.
///
/// Every error that reaches a caller has already been logged and counted
/// where it happened; callers only decide what to do next.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JobError {
    /// The configuration has a value out of range.
    #[error("invalid job configuration: {0}")]
    Config(String),
    /// The record cannot be routed: unknown type, PUSH without keys, ROOM without a room.
    #[error("invalid push record: {0}")]
    InvalidRecord(String),
    /// A PUSH names a comet this job does not know (not yet discovered, or gone).
    #[error("unknown comet {0:?}")]
    UnknownComet(String),
    /// A ROOM or BROADCAST found no comet to deliver to.
    #[error("no comets to deliver to")]
    NoComets,
    /// The comet's routine queue stayed full for the whole enqueue timeout.
    #[error("queue of comet {0:?} stayed full for the enqueue timeout")]
    CometQueueFull(String),
    /// The room's batcher queue stayed full for the whole enqueue timeout.
    #[error("queue of room {0:?} stayed full for the enqueue timeout")]
    RoomQueueFull(String),
    /// The comet did not accept the push after every retry (unreachable or no answer in time).
    #[error("comet {server:?} unavailable: {reason}")]
    CometUnavailable {
        /// The comet's server id.
        server: String,
        /// The last failure.
        reason: String,
    },
    /// The comet refused the push as malformed; it was not retried.
    #[error("comet {server:?} rejected the push: {reason}")]
    CometRejected {
        /// The comet's server id.
        server: String,
        /// The comet's explanation.
        reason: String,
    },
    /// The job is shutting down (or its grace period ran out) before delivery.
    #[error("job is shutting down")]
    Shutdown,
    /// The delivery was dropped without an outcome (a worker task was aborted).
    #[error("delivery abandoned without an outcome")]
    Abandoned,
}

impl JobError {
    /// Whether the record must stay uncommitted: delivery was interrupted
    /// (shutdown, an aborted worker), not refused, so a later job retries it.
    pub fn keeps_offset(&self) -> bool {
        matches!(self, JobError::Shutdown | JobError::Abandoned)
    }

    /// The `reason` label this error is counted under in `rim_job_dropped_total`.
    pub fn reason(&self) -> &'static str {
        match self {
            JobError::Config(_) => "config",
            JobError::InvalidRecord(_) => "invalid_record",
            JobError::UnknownComet(_) => "unknown_comet",
            JobError::NoComets => "no_comets",
            JobError::CometQueueFull(_) => "comet_queue_full",
            JobError::RoomQueueFull(_) => "room_queue_full",
            JobError::CometUnavailable { .. } => "comet_unavailable",
            JobError::CometRejected { .. } => "invalid",
            JobError::Shutdown => "shutdown",
            JobError::Abandoned => "abandoned",
        }
    }
}
