//! Waiting for something that happens eventually: try a probe again and
//! again until it answers, and fail loudly once a deadline passed.
//!
//! Time is tokio's, so a test on a paused clock polls on that clock. The
//! probe always runs at least once, and once more after each pause of
//! `every`; the deadline is checked after each try that did not succeed, so
//! a slow probe's last answer still counts. `every` may be zero for a probe
//! that waits by itself (e.g. it reads with a timeout): it then runs again
//! at once.
//!
//! - [`until`]: a condition; fails with a fixed description.
//! - [`eventually`]: a probe that answers `Ok(value)` or `Err(what is still
//!   wrong)`; fails with the last `Err`, so the message shows what was last
//!   observed.
//! - [`until_ok`]: the same, returning the last `Err` instead of failing, for
//!   a caller that gathers its own diagnostics first.

use std::fmt::Display;
use std::time::Duration;

use tokio::time::Instant;

/// Runs `probe` every `every` until it returns `Ok`, for at most `within`.
/// Returns the `Ok` value, or the last `Err` once a try that ended after
/// `within` failed too.
pub async fn until_ok<T, E>(
    within: Duration,
    every: Duration,
    mut probe: impl AsyncFnMut() -> Result<T, E>,
) -> Result<T, E> {
    let deadline = Instant::now() + within;
    loop {
        match probe().await {
            Ok(value) => return Ok(value),
            Err(last) if Instant::now() >= deadline => return Err(last),
            Err(_) => {}
        }
        if !every.is_zero() {
            tokio::time::sleep(every).await;
        }
    }
}

/// Runs `probe` every `every` until it returns `Ok`, and returns that value;
/// panics with the last `Err` once `within` passed.
pub async fn eventually<T, E: Display>(
    within: Duration,
    every: Duration,
    probe: impl AsyncFnMut() -> Result<T, E>,
) -> T {
    match until_ok(within, every, probe).await {
        Ok(value) => value,
        Err(last) => panic!("timed out after {within:?}: {last}"),
    }
}

/// Checks `done` every `every` until it holds; panics with `what` (what
/// went wrong, e.g. "no delivery before the kill") once `within` passed.
pub async fn until(
    what: &str,
    within: Duration,
    every: Duration,
    mut done: impl AsyncFnMut() -> bool,
) {
    eventually(
        within,
        every,
        async || if done().await { Ok(()) } else { Err(what) },
    )
    .await
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::time::Instant;

    use super::{eventually, until, until_ok};

    const MS: Duration = Duration::from_millis(1);

    #[tokio::test(start_paused = true)]
    async fn answers_as_soon_as_the_probe_does() {
        let start = Instant::now();
        let mut tries = 0;
        let value = eventually(100 * MS, 10 * MS, async || {
            tries += 1;
            if tries == 3 {
                Ok(tries)
            } else {
                Err("not yet")
            }
        })
        .await;
        assert_eq!(value, 3);
        assert_eq!(start.elapsed(), 20 * MS);
    }

    #[tokio::test(start_paused = true)]
    async fn gives_the_last_answer_once_the_deadline_passed() {
        let start = Instant::now();
        let mut tries = 0;
        let last = until_ok(100 * MS, 30 * MS, async || -> Result<(), u32> {
            tries += 1;
            Err(tries)
        })
        .await;
        // Tries at 0, 30, 60, 90 and 120 ms: the last one ended past 100 ms.
        assert_eq!(last, Err(5));
        assert_eq!(start.elapsed(), 120 * MS);
    }

    #[tokio::test(start_paused = true)]
    async fn a_probe_that_waits_by_itself_runs_again_at_once() {
        let start = Instant::now();
        let last = until_ok(
            100 * MS,
            Duration::ZERO,
            async || -> Result<(), Duration> {
                tokio::time::sleep(40 * MS).await;
                Err(start.elapsed())
            },
        )
        .await;
        assert_eq!(last, Err(120 * MS));
    }

    #[tokio::test(start_paused = true)]
    #[should_panic(expected = "timed out after 50ms: 7 still missing")]
    async fn eventually_fails_with_the_last_answer() {
        eventually(50 * MS, 10 * MS, async || -> Result<(), String> {
            Err("7 still missing".to_owned())
        })
        .await;
    }

    #[tokio::test(start_paused = true)]
    #[should_panic(expected = "timed out after 50ms: no delivery")]
    async fn until_fails_with_what() {
        until("no delivery", 50 * MS, 10 * MS, async || false).await;
    }

    #[tokio::test(start_paused = true)]
    async fn until_returns_once_the_condition_holds() {
        let start = Instant::now();
        until("never", 50 * MS, 10 * MS, async || {
            start.elapsed() >= 30 * MS
        })
        .await;
        assert_eq!(start.elapsed(), 30 * MS);
    }
}
