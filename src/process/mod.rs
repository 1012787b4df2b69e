//! The distributed mode: each component in its own process, connected the
//! way goim connects them.
//!
//! ```text
//! HTTP -> logic --Kafka--> job --gRPC goim.comet.Comet--> comet <-- clients
//!           |  ^                                           |
//!           |  +--------- gRPC goim.logic.Logic -----------+
//!           +--gRPC rim.router.Router--> router shards (memory or Redis)
//! ```
//!
//! One module per process: [`logic`], [`router`], [`job`], [`comet`]. Each
//! has a `run` function that serves until its shutdown token is cancelled;
//! their configurations (examples in `config/`) are in [`crate::config`],
//! and what they share is in [`crate::wiring`]. Comets register through
//! their online reports (carrying their gRPC address) in the router shards;
//! job discovers them there ([`rim_job::discovery`]).

pub mod comet;
pub mod job;
pub mod logic;
pub mod router;
