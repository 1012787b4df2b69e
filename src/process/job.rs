//! `rim job`: consumes the push topic and fans records out to comets over
//! gRPC. Comets come from a static list and from discovery
//! ([`rim_job::discovery`]): the comets' online reports in the router shards
//! carry their gRPC address. The same shards hold the rooms' membership
//! records, which decide where a room push goes (`[job.room] targets`).

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::{JobProcessConfig, Validate};
use crate::wiring;

/// Runs job until `shutdown`: stops consuming, lets comets accept what is in
/// flight, commits offsets.
pub async fn run(
    config: JobProcessConfig,
    metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    ready: bool,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    config.validate()?;
    let job = rim_job::Job::new(config.job.clone());
    if let Some(store) = wiring::mailbox_store(&config.mailbox).await? {
        let router = wiring::router_client(&config.routers, config.connect_timeout)
            .map_err(anyhow::Error::msg)?;
        job.set_mailbox(rim_job::MailboxStage::new(store, router));
    }
    let metrics_addr = wiring::serve_metrics(&config.metrics_bind, metrics, shutdown.clone())
        .await?
        .map(|addr| addr.to_string());
    wiring::announce(ready, serde_json::json!({"metrics": metrics_addr}));
    let discovery_stop = CancellationToken::new();
    let (first_tx, first_rx) = tokio::sync::oneshot::channel();
    let routers = if config.routers.is_empty() {
        None
    } else {
        match wiring::router_client(&config.routers, config.connect_timeout) {
            Ok(routers) => Some(routers),
            Err(e) => {
                warn!(error = %e, "comet discovery disabled");
                None
            }
        }
    };
    if let Some(routers) = &routers {
        if config.job.room.targets == rim_job::RoomTargets::Members {
            job.set_room_directory(std::sync::Arc::new(routers.clone()));
        }
    }
    let discovery = tokio::spawn(rim_job::discovery::discover(
        job.clone(),
        routers,
        config.discovery(),
        first_tx,
        discovery_stop.clone(),
    ));
    // Records routed before the comets are known would find none: wait for
    // the first discovery round (retried while the routers are unreachable).
    let consumed = tokio::select! {
        _ = shutdown.cancelled() => None,
        _ = first_rx => {
            info!(topic = %config.kafka.topic, group = %config.kafka.group, comets = job.comets().len(), "rim job consuming");
            let mailbox = match config.mailbox.enabled() {
                true => {
                    let kafka = config.mailbox.kafka(&config.kafka);
                    info!(topic = %kafka.topic, group = %kafka.group, "rim job consuming stored messages");
                    Some(rim_queue::kafka::KafkaSource::new(&kafka))
                }
                false => None,
            };
            match (rim_queue::kafka::KafkaSource::new(&config.kafka), mailbox) {
                (Ok(source), None) => Some(Ok(job.clone().consume(source, shutdown).await)),
                // Both loops end together; the first to end stops the job.
                (Ok(source), Some(Ok(stored))) => {
                    // One consumer that stops on its own stops the other.
                    let stop = shutdown.child_token();
                    let run = |ended: rim_job::Ended| {
                        stop.cancel();
                        ended
                    };
                    let (pushes, stored) = tokio::join!(
                        async { run(job.clone().consume(source, stop.clone()).await) },
                        async { run(job.clone().consume(stored, stop.clone()).await) },
                    );
                    Some(Ok(if pushes == rim_job::Ended::SourceEnded { pushes } else { stored }))
                }
                (Err(e), _) | (_, Some(Err(e))) => Some(Err(e)),
            }
        }
    };
    if !matches!(consumed, Some(Ok(_))) {
        job.shutdown().await;
    }
    discovery_stop.cancel();
    let _ = discovery.await;
    if let Some(Ok(rim_job::Ended::SourceEnded)) = consumed {
        // Not asked to stop: the consumer gave up (logged). Exit non-zero so
        // a supervisor restarts the job; uncommitted records are redelivered.
        anyhow::bail!("the kafka consumer stopped on its own; see the log above");
    }
    consumed.transpose()?;
    info!("job stopped");
    Ok(())
}
