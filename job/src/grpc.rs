//! [`GrpcComet`]: a comet reached over gRPC (`goim.comet.Comet`), the
//! distributed-mode [`CometClient`].
//!
//! Pushes and health checks use two HTTP/2 connections, so a health check
//! never waits for a stream slot behind pushes (and a burst of pushes never
//! shares its connection's stream budget with the checks that decide
//! whether the comet is alive). Batches go out as rim's `PushMsgs`; a comet
//! that answers it `UNIMPLEMENTED` (goim's, an older rim) is remembered and
//! asked again only after [`UNSUPPORTED_RECHECK`], meanwhile job sends it
//! `PushMsg` per push.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rim_proto::pb::comet::comet_client::CometClient as CometRpcClient;
use rim_proto::pb::comet::{BroadcastReq, BroadcastRoomReq, PushMsgReq, PushMsgsReq};
use tokio::time::Instant;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;
use tracing::{debug, info};

use crate::{CometCallError, CometClient};

/// How long a comet that answered `PushMsgs` with `UNIMPLEMENTED` gets
/// `PushMsg` per push before `PushMsgs` is tried again (it may have been
/// upgraded meanwhile).
pub const UNSUPPORTED_RECHECK: Duration = Duration::from_secs(60);

/// One comet over gRPC; connects lazily and reconnects on its own. Clones
/// share the connections and what was learnt about `PushMsgs`.
#[derive(Clone, Debug)]
pub struct GrpcComet {
    client: CometRpcClient<Channel>,
    health: HealthClient<Channel>,
    /// Deadline of a health check (the connect timeout).
    probe_timeout: Duration,
    /// Since `epoch`, in ms (plus 1; 0: never), when the comet last
    /// answered `PushMsgs` with `UNIMPLEMENTED`.
    unsupported_at: Arc<AtomicU64>,
    epoch: Instant,
}

impl GrpcComet {
    /// A client for the comet at `addr` (`host:port`): `connect_timeout`
    /// bounds connecting and each health check, `call_timeout` each push
    /// call (the job's `push_timeout`; its routines also bound every attempt
    /// by it).
    pub fn new(
        addr: &str,
        connect_timeout: Duration,
        call_timeout: Duration,
    ) -> Result<GrpcComet, CometCallError> {
        let endpoint = Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| CometCallError::Invalid(format!("comet address {addr:?}: {e}")))?
            .connect_timeout(connect_timeout)
            .timeout(call_timeout);
        // Two channels, two connections: health checks have their own
        // stream budget (see the module docs).
        let pushes = endpoint.connect_lazy();
        let checks = endpoint.connect_lazy();
        Ok(GrpcComet {
            client: CometRpcClient::new(pushes)
                .max_decoding_message_size(16 << 20)
                .max_encoding_message_size(16 << 20),
            health: HealthClient::new(checks),
            probe_timeout: connect_timeout,
            unsupported_at: Arc::new(AtomicU64::new(0)),
            epoch: Instant::now(),
        })
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX - 1) + 1
    }

    /// Whether `PushMsgs` is worth a try: never refused, or refused longer
    /// than [`UNSUPPORTED_RECHECK`] ago.
    fn batches(&self) -> bool {
        let at = self.unsupported_at.load(Ordering::Relaxed);
        at == 0 || self.now_ms().saturating_sub(at) >= UNSUPPORTED_RECHECK.as_millis() as u64
    }

    /// Whether comet `server_id` answers at this address: `grpc.health.v1`
    /// says [`rim_proto::comet_health_name`] of it is serving, within the
    /// connect timeout. Another comet now at the address answers `NOT_FOUND`.
    pub async fn serving(&self, server_id: &str) -> bool {
        let req = HealthCheckRequest {
            service: rim_proto::comet_health_name(server_id),
        };
        let mut health = self.health.clone();
        match tokio::time::timeout(self.probe_timeout, health.check(req)).await {
            Ok(Ok(reply)) => reply.into_inner().status == ServingStatus::Serving as i32,
            Ok(Err(status)) => {
                debug!(code = ?status.code(), message = status.message(), "comet health check failed");
                false
            }
            Err(_) => {
                debug!(timeout = ?self.probe_timeout, "comet health check timed out");
                false
            }
        }
    }
}

fn comet_error(status: Status) -> CometCallError {
    metrics::counter!("rim_job_grpc_errors_total", "code" => format!("{:?}", status.code()))
        .increment(1);
    match status.code() {
        Code::InvalidArgument => CometCallError::Invalid(status.message().to_owned()),
        Code::Unimplemented => CometCallError::Unsupported,
        _ => CometCallError::Unavailable(format!("{:?}: {}", status.code(), status.message())),
    }
}

#[async_trait]
impl CometClient for GrpcComet {
    async fn push_msg(&self, req: PushMsgReq) -> Result<(), CometCallError> {
        self.client
            .clone()
            .push_msg(req)
            .await
            .map_err(comet_error)?;
        Ok(())
    }

    async fn push_msgs(
        &self,
        reqs: Vec<PushMsgReq>,
    ) -> Result<Vec<Option<String>>, CometCallError> {
        if !self.batches() {
            return Err(CometCallError::Unsupported);
        }
        let count = reqs.len();
        let reply = self
            .client
            .clone()
            .push_msgs(PushMsgsReq { pushes: reqs })
            .await
            .map_err(comet_error);
        let reply = match reply {
            Ok(reply) => reply.into_inner(),
            Err(CometCallError::Unsupported) => {
                if self.unsupported_at.swap(self.now_ms(), Ordering::Relaxed) == 0 {
                    info!("comet does not serve PushMsgs (goim's, or an older rim): pushes go one per call");
                }
                return Err(CometCallError::Unsupported);
            }
            Err(e) => return Err(e),
        };
        let mut outcomes = vec![None; count];
        for refused in reply.refused {
            if let Some(slot) = outcomes.get_mut(refused.index as usize) {
                *slot = Some(refused.reason);
            }
        }
        Ok(outcomes)
    }

    async fn broadcast(&self, req: BroadcastReq) -> Result<(), CometCallError> {
        self.client
            .clone()
            .broadcast(req)
            .await
            .map_err(comet_error)?;
        Ok(())
    }

    async fn broadcast_room(&self, req: BroadcastRoomReq) -> Result<(), CometCallError> {
        self.client
            .clone()
            .broadcast_room(req)
            .await
            .map_err(comet_error)?;
        Ok(())
    }
}
