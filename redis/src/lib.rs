//! rim's connection to Redis: one node, or a Redis Cluster through the redis
//! crate's cluster client, behind one [`Conn`] that the router's and the
//! mailbox's Redis stores share.
//!
//! Owns which Redis a store talks to ([`Target`]), connecting with bounded
//! timeouts (and connecting again after a loss), and running a batch of
//! commands that span keys ([`Batch`]): one pipeline on a node, one pipeline
//! per hash slot on a cluster, where a pipeline may not cross slots. It does
//! not own any key layout: each store names its keys so that every single
//! operation (a command, a script, a `MULTI`) stays in one slot, and only a
//! [`Batch`] or a multi-key read spans slots.
//!
//! On a cluster a command follows redirections and a failover on its own
//! (the cluster client's retries, bounded by [`Conn`]'s overall deadline),
//! and a batch's per-slot pipelines are repeated after a redirection or a
//! lost connection, so every command put in a [`Batch`] must allow a repeat.

#![warn(missing_docs)]

mod batch;
mod conn;
mod target;

pub use batch::Batch;
pub use conn::Conn;
/// The redis crate this one is built on, for the types in its signatures.
pub use redis;
pub use target::Target;
