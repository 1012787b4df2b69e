//! rim: a goim-compatible push server in one binary.
//!
//! The components live in their own crates (`rim-proto`, `rim-router`,
//! `rim-queue`, `rim-logic`, `rim-job`, `rim-comet`); this crate only wires
//! them together.
//!
//! - [`config`]: every configuration file (TOML): the standalone one, with a
//!   section per component, and one per process; one `load`, one error.
//! - [`standalone`]: every component in one process, connected in-process:
//!   logic publishes to a bounded in-process queue that job consumes, job pushes
//!   straight into the comet, and the comet calls logic directly.
//! - [`process`]: each component in its own process (`rim logic`,
//!   `rim router`, `rim job`, `rim comet`), over Kafka, gRPC and Redis.
//! - [`wiring`]: what the above share (binding, HTTP and `/metrics`, the
//!   `READY` line, the TLS reload on SIGHUP, the router client, the start
//!   error); `standalone` and the `process` modules use it and
//!   [`config`], never each other.
//! - [`tools`]: operator tooling: `rim check-config` and `rim token`.
//! - [`web`]: the web pages served next to the API (the admin console at
//!   `/admin/`, the demo at `/demo/`), embedded from `web/dist`.
//! - `local`: the in-process adapters standalone connects components with.
//!
//! Data flow: HTTP -> logic -> queue -> job -> comet -> client sockets.

pub mod config;
mod local;
pub mod process;
pub mod standalone;
pub mod tools;
pub mod web;
pub mod wiring;
