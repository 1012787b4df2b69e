//! rim job: consumes push records (`goim.logic.PushMsg`) and fans them out to
//! comets through per-comet routine queues, with room batching.
//!
//! # Data flow
//!
//! ```text
//! logic -> queue (Kafka, or in-process) -> Job::dispatch
//!   PUSH      -> the named comet's worker for the first key -> CometClient::push_msgs
//!                (the keyed pushes queued on that worker, in one call; push_msg each
//!                for a comet that does not serve it)
//!   ROOM      -> the room's batcher -> the worker for the room of each comet holding
//!                members (or every comet) -> broadcast_room
//!   BROADCAST -> every comet's worker for the op -> CometClient::broadcast
//! ```
//!
//! Every push reaches comets as goim frames it: a proto `{ver 1, op 9, seq 0}`
//! whose body is the inner frame `{ver 1, op, seq 0, msg}` (a room batch: several
//! inner frames back to back). [`Job::dispatch`] returns a [`Delivery`] that
//! resolves once the comets accepted the record; [`Job::consume`] then settles
//! the record's receipt, so a Kafka offset is committed only then.
//!
//! Where rim differs from goim's job: every queue is bounded and every wait has
//! a deadline (a dead comet cannot stall the others forever); every message not
//! delivered is logged and counted in `rim_job_dropped_total{reason}`; a quiet
//! room's message is sent at once instead of after up to 1 s; zero comets is an
//! error, not a division by zero.
//!
//! # Glossary
//! - **comet** (server id): a connection node; job calls it through [`CometClient`].
//! - **key**: one client connection; **room**: a channel sessions join (`type://id`).
//! - **op**: the business operation code written into the client frame.
//! - **routine**: one of a comet's workers, each with its own bounded queue.
//!
//! # Layout
//! - `job`: [`Job`], dispatch rules, the consumer loop over any
//!   [`rim_queue::RecordSource`] (in-process or Kafka), shutdown.
//! - `routine`: per-comet workers, deadlines, retries, circuit breaker.
//! - `room`: per-room batchers.
//! - `members`: which comets a room batch goes to: the room's membership
//!   records ([`RoomDirectory`]), comets with stale reports, fail-open.
//! - `delivery`: [`Delivery`] and the acks behind it.
//! - `mailbox`: [`MailboxStage`], stored messages (the `rim-mailbox` topic):
//!   append to the user's mailbox, then deliver with the seq.
//! - [`comet`]: the [`CometClient`] trait; [`config`]: [`Config`]; [`metrics`]: metric names.
//! - [`grpc`]: [`grpc::GrpcComet`], a comet over gRPC.
//! - [`discovery`]: which comets a job pushes to, from static ones and the
//!   routers' online reports: joins, the missed-health-check rule for leaves,
//!   the backoff of stale reports ([`discovery::discover`]).
//! - `testing` (feature `test-util`): test support for the integration tests.

#![warn(missing_docs)]

pub mod comet;
pub mod config;
mod delivery;
pub mod discovery;
mod error;
pub mod grpc;
mod job;
mod mailbox;
mod members;
pub mod metrics;
mod room;
mod routine;

pub use comet::{CometCallError, CometClient};
pub use config::{Config, RoomConfig, RoomTargets};
pub use error::JobError;
pub use job::{Delivery, Ended, Job};
pub use mailbox::MailboxStage;
pub use members::RoomDirectory;

#[cfg(any(test, feature = "test-util"))]
pub mod testing;
