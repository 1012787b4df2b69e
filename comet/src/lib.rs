//! rim comet (work in progress).
pub mod logic;
