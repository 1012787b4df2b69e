//! Integration tests: a real comet on 127.0.0.1:0 with a fake logic and raw
//! goim clients, checked against bytes captured from a running goim v2 comet
//! ("the captures"; what they hold: docs/protocol.md, "Test vectors").

#![allow(unreachable_pub)] // test helpers shared between modules

mod common;
mod grpc_deadlines;
mod limits;
mod online;
mod push;
mod rooms;
mod tcp;
mod timers;
mod tls;
mod ws;
mod ws_rfc6455;
