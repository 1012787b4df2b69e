//! rim job (work in progress).
pub mod comet;
