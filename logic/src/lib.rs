//! rim logic: the HTTP push API, the logic service that comets call, and the
//! publisher of push records to the push queue.
//!
//! # Data flow
//!
//! A business backend calls the HTTP API ([`http::app`]). For a push to
//! keys or users, [`Logic`] asks the session registry ([`rim_router::Router`])
//! which comet holds each connection and publishes one `goim.logic.PushMsg`
//! per comet to the push queue ([`rim_queue::PushQueue`]: Kafka, or the
//! in-process queue standalone);
//! a room or broadcast push is one record. job consumes the queue and
//! delivers to comets. A push is answered with success only once the queue
//! has accepted every record.
//!
//! Comets call the logic service ([`Logic::connect`], [`Logic::heartbeat`],
//! [`Logic::disconnect`], [`Logic::renew_online`], ...) in-process
//! (standalone) or through gRPC (`goim.logic.Logic`), to register sessions
//! and report their online counts.
//!
//! # Glossary
//! - **mid**: member id, the user (int64); 0 is an anonymous connection.
//! - **key**: one client connection, unique in the cluster.
//! - **room**: a free-form string, conventionally `type://id`.
//! - **server**: a comet's id (its hostname).
//! - **op / operation**: the business operation code written into the client frame.
//!
//! # Layout
//! - `config`: [`Config`]. `error`: [`LogicError`].
//! - `service`: [`Logic`] and the comet-facing operations; `push`: push
//!   resolution into records; `online`: the cluster online aggregate;
//!   `rooms`: room membership records (which comets hold a room's
//!   members), announced by comets and refreshed by their reports;
//!   `balancer`: weighted comet choice for the nodes API; `token`:
//!   [`Token`], the client's auth token; `auth`: [`Authenticator`], its
//!   verification (`trust` or `jwt`), and [`sign_client_token`] (`rim token`).
//! - `chat`: messages clients send (op 4): checks, envelope, where they go.
//! - `groups`: group membership, group messages from the backend, mutes
//!   and their cache.
//! - `hooks`: the backend hooks: `upstream` (each client message, before
//!   it is accepted) and `offline` (stored messages no device acknowledged;
//!   [`Logic::run_hooks`]).
//! - `im`: durable messaging: [`Mailbox`], stored pushes, sync, acks,
//!   read marks, history.
//! - `filter`: [`WordFilter`], the chat word filter (mask or reject the
//!   words of a words file, reloaded when it changes).
//! - [`http`]: the axum application (v2 `/goim/*`, v1 `/1/*`, `/rim/v1/*`)
//!   and its OpenAPI document ([`http::OPENAPI`], served at `/openapi.json`).
//! - [`grpc`]: the `goim.logic.Logic`, `rim.im.Im` and `rim.room.Rooms`
//!   services for comets (distributed mode).

#![warn(missing_docs)]

mod auth;
mod balancer;
mod chat;
mod config;
mod error;
mod filter;
mod groups;
pub mod grpc;
mod hooks;
pub mod http;
mod im;
mod online;
mod push;
mod rooms;
mod service;
mod token;

pub use auth::{sign_client_token, Authenticator, ClientClaims};
pub use config::{
    ApiAccess, ApiConfig, AuthConfig, AuthMode, BackoffConfig, ChatConfig, Config, HooksConfig,
    JwtAlgorithm, LogicConfigError, NodeConfig, OfflineHookConfig, OnFailure, UpstreamHookConfig,
};
pub use error::LogicError;
pub use filter::{FilterAction, FilterConfig, FilterError, Verdict, WordFilter};
pub use groups::{GroupError, MuteScope, MUTE_CACHE_TTL};
pub use im::{History, Mailbox, StoredPush, HISTORY_LIMIT_MAX, SYNC_LIMIT_MAX};
pub use online::{LocalOnline, OnlineTotal};
pub use push::Accepts;
pub use service::Logic;
pub use token::{Since, Token};
