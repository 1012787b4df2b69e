//! rim logic (work in progress).
pub mod queue;
