//! rim: a goim-compatible push server in one binary.
//!
//! The components live in their own crates (`rim-proto`, `rim-comet`,
//! `rim-logic`, `rim-router`, `rim-job`); this crate wires them together.
//!
//! - [`config`]: the standalone configuration file (TOML), one section per component.
//! - [`standalone`]: every component in one process, connected in-process:
//!   logic publishes to a bounded in-process queue that job consumes, job pushes
//!   straight into the comet, and the comet calls logic directly.
//! - [`process`]: each component in its own process (`rim logic`,
//!   `rim router`, `rim job`, `rim comet`), over Kafka, gRPC and Redis.
//!
//! Data flow: HTTP -> logic -> queue -> job -> comet -> client sockets.

pub mod config;
pub mod process;
mod local;
pub mod standalone;
