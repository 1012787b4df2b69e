//! The comet's online report to logic: room, connection and IP counts at
//! once and then every `online_report_interval` (goim's RenewOnline), the
//! cluster room counts logic answers with, and the sign-off at shutdown.
//! A report whose reply carries `room_ttl_ms` refreshed the membership
//! records of the rooms it listed: they count as confirmed for joins
//! (`announce`) from the instant the report was sent.

use std::sync::Arc;
use std::time::Duration;

use rim_proto::pb::logic::OnlineReq;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::announce::Announcer;
use crate::config::Config;
use crate::hub::Hub;
use crate::logic::{LogicCallError, LogicGateway};
use crate::metrics;

/// Wait before retrying a failed online report (goim retries every second).
const ONLINE_RETRY: Duration = Duration::from_secs(1);

/// Reports one comet's counts to logic.
pub(crate) struct Reporter {
    hub: Arc<Hub>,
    logic: LogicGateway,
    rooms: Arc<Announcer>,
    server_id: String,
    interval: Duration,
    /// What the report says of this comet besides its counts.
    addrs: Vec<String>,
    weight: i32,
    grpc_addr: String,
}

impl Reporter {
    pub(crate) fn new(
        hub: Arc<Hub>,
        logic: LogicGateway,
        rooms: Arc<Announcer>,
        server_id: String,
        config: &Config,
    ) -> Reporter {
        Reporter {
            hub,
            logic,
            rooms,
            server_id,
            interval: config.online_report_interval,
            addrs: config.addrs.clone(),
            weight: config.weight,
            grpc_addr: config.grpc_addr.clone(),
        }
    }

    /// Reports at once and then every interval (retrying a failure after
    /// 1 s) until `closing`, storing the cluster room counts logic returns.
    pub(crate) async fn run(self: Arc<Self>, closing: CancellationToken) {
        loop {
            let wait = tokio::select! {
                () = closing.cancelled() => return,
                result = self.renew_online() => match result {
                    Ok(()) => {
                        ::metrics::counter!(metrics::ONLINE_REPORTS, "result" => "ok").increment(1);
                        self.interval
                    }
                    Err(e) => {
                        ::metrics::counter!(metrics::ONLINE_REPORTS, "result" => "error").increment(1);
                        warn!(error = %e, retry = ?ONLINE_RETRY, "online report to logic failed");
                        ONLINE_RETRY
                    }
                },
            };
            tokio::select! {
                () = closing.cancelled() => return,
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Tells logic this comet is gone (an online report with `offline`), so
    /// its report is marked stale now rather than when reports stop coming.
    /// Best effort: a comet that cannot reach logic just goes stale.
    pub(crate) async fn sign_off(&self) {
        let req = OnlineReq {
            server: self.server_id.clone(),
            offline: true,
            ..OnlineReq::default()
        };
        match self
            .logic
            .call("renew_online", self.logic.client().renew_online(req))
            .await
        {
            Ok(_) => info!(server_id = %self.server_id, "signed off from logic"),
            Err(e) => {
                warn!(error = %e, "sign-off to logic failed; the online report goes stale instead")
            }
        }
    }

    /// The report of this comet's counts now.
    pub(crate) fn report(&self) -> OnlineReq {
        let room_count = self.hub.room_counts();
        let stats = self.hub.stats();
        OnlineReq {
            server: self.server_id.clone(),
            room_count,
            conn_count: i64::try_from(stats.connections).unwrap_or(i64::MAX),
            ip_count: i64::try_from(stats.ips).unwrap_or(i64::MAX),
            addrs: self.addrs.clone(),
            weight: self.weight,
            grpc_addr: self.grpc_addr.clone(),
            offline: false,
        }
    }

    async fn renew_online(&self) -> Result<(), LogicCallError> {
        let req = self.report();
        ::metrics::gauge!(metrics::ROOMS).set(req.room_count.len() as f64);
        let rooms: Vec<String> = req
            .room_count
            .iter()
            .filter(|(_, count)| **count > 0)
            .map(|(room, _)| room.clone())
            .collect();
        // Before the call: logic writes the records after receiving it.
        let sent = Instant::now();
        let reply = self
            .logic
            .call("renew_online", self.logic.client().renew_online(req))
            .await?;
        if reply.room_ttl_ms > 0 {
            let rooms: Vec<&str> = rooms.iter().map(String::as_str).collect();
            self.rooms
                .confirm(&rooms, sent, Duration::from_millis(reply.room_ttl_ms));
        }
        self.hub.set_all_online(&reply.all_room_count);
        Ok(())
    }
}
