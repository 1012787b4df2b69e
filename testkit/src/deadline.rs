//! Peers that never answer, and the check that a client's call deadline
//! fires against them: for the gRPC clients' deadline tests. Real sockets,
//! so real time (no paused clock).

use std::future::Future;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::time::Instant;

/// The deadline the tests give the client under test.
pub const TIMEOUT: Duration = Duration::from_millis(300);
/// How much earlier than [`TIMEOUT`] a call may fail (timer granularity).
const SLACK: Duration = Duration::from_millis(50);
/// A call still running after this has not honoured its deadline: about 3 x
/// [`TIMEOUT`] plus 300 ms for a loaded machine. A deadline applied twice
/// (connect, then call) still fits; one restarted per retry or address, or
/// one that is not applied at all, does not.
const BOUND: Duration = Duration::from_millis(3 * TIMEOUT.as_millis() as u64 + 300);

/// A peer on 127.0.0.1 that accepts connections and holds them open without
/// ever writing a byte (an HTTP/2 handshake never completes). Returns its
/// `host:port`; the accept task lives until the test's runtime shuts down.
pub async fn silent_tcp_peer() -> String {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a loopback port");
    let addr = listener.local_addr().expect("bound address").to_string();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    addr
}

/// Runs `call` and returns its output, failing the test unless it ended at
/// its [`TIMEOUT`] deadline: not before it, and not long after.
pub async fn ends_at_deadline<T>(what: &str, call: impl Future<Output = T>) -> T {
    let start = Instant::now();
    let out = tokio::time::timeout(BOUND, call)
        .await
        .unwrap_or_else(|_| panic!("{what}: still running after {BOUND:?} (deadline {TIMEOUT:?})"));
    let elapsed = start.elapsed();
    assert!(
        elapsed >= TIMEOUT - SLACK,
        "{what}: ended after {elapsed:?}, before its {TIMEOUT:?} deadline"
    );
    out
}
