//! [`GrpcComet`]: a comet reached over gRPC (`goim.comet.Comet`), the
//! distributed-mode [`CometClient`].

use std::time::Duration;

use async_trait::async_trait;
use rim_proto::pb::comet::comet_client::CometClient as CometRpcClient;
use rim_proto::pb::comet::{BroadcastReq, BroadcastRoomReq, PushMsgReq};
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;
use tracing::debug;

use crate::{CometCallError, CometClient};

/// One comet over gRPC; connects lazily and reconnects on its own.
#[derive(Clone, Debug)]
pub struct GrpcComet {
    client: CometRpcClient<Channel>,
    health: HealthClient<Channel>,
    /// Deadline of a health check (the connect timeout).
    probe_timeout: Duration,
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
        let channel = endpoint.connect_lazy();
        Ok(GrpcComet {
            client: CometRpcClient::new(channel.clone())
                .max_decoding_message_size(16 << 20)
                .max_encoding_message_size(16 << 20),
            health: HealthClient::new(channel),
            probe_timeout: connect_timeout,
        })
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
