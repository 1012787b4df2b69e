//! `rim logic`: the HTTP push API and the logic gRPC service for comets;
//! publishes pushes to Kafka and keeps sessions in the router shards; with
//! `[web] enabled = true`, also the web pages ([`crate::web`]).

use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::config::{LogicProcessConfig, Validate};
use crate::wiring;

/// Runs logic until `shutdown`.
pub async fn run(
    config: LogicProcessConfig,
    metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    ready: bool,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    config.validate()?;
    wiring::check_filter(&config.effective_logic())?;
    let router = wiring::router_client(&config.routers, config.router_timeout)
        .map_err(anyhow::Error::msg)?;
    let queue = Arc::new(rim_queue::kafka::KafkaQueue::new(&config.kafka)?);
    if config.kafka.create_topic {
        // A broker that is down at start must not keep logic from starting:
        // pushes answer 503 until it is up, and the topic is created then.
        let (queue, kafka, stop) = (queue.clone(), config.kafka.clone(), shutdown.clone());
        tokio::spawn(async move { queue.ensure_topic_retrying(&kafka, stop).await });
    }
    let logic = match wiring::mailbox_store(&config.mailbox).await? {
        Some(store) => {
            let kafka = config.mailbox.kafka(&config.kafka);
            let topic = Arc::new(rim_queue::kafka::KafkaQueue::new(&kafka)?);
            if kafka.create_topic {
                let (topic, stop) = (topic.clone(), shutdown.clone());
                tokio::spawn(async move { topic.ensure_topic_retrying(&kafka, stop).await });
            }
            info!(topic = %config.mailbox.topic, "stored messages on");
            let mut mutes = store.watch_mutes();
            let logic = rim_logic::Logic::with_mailbox(
                config.effective_logic(),
                router,
                queue,
                rim_logic::Mailbox::queued(store, topic),
            );
            // Mutes set through another logic reach this one's cache.
            let watching = Arc::downgrade(&logic);
            tokio::spawn(async move {
                while let Some(change) = mutes.recv().await {
                    let Some(logic) = watching.upgrade() else {
                        return;
                    };
                    logic.mutes_changed(match change {
                        rim_mailbox::MuteChange::Mid(mid) => Some(mid),
                        rim_mailbox::MuteChange::All => None,
                    });
                }
            });
            logic
        }
        None => rim_logic::Logic::new(config.effective_logic(), router, queue),
    };
    wiring::reload_filter(&logic, shutdown.clone());
    let http = wiring::bind(&config.logic.http_bind).await?;
    let grpc = wiring::bind(&config.grpc_bind).await?;
    let (http_addr, grpc_addr) = (http.local_addr()?, grpc.local_addr()?);
    info!(http = %http_addr, grpc = %grpc_addr, "rim logic listening");
    wiring::announce(
        ready,
        serde_json::json!({"http": http_addr.to_string(), "grpc": grpc_addr.to_string()}),
    );

    let mut app = rim_logic::http::app(logic.clone());
    if config.web.enabled {
        app = crate::web::routes(app);
        info!(admin = %format!("http://{http_addr}/admin/"), "web pages on");
    }
    let http_task = tokio::spawn(wiring::serve_http(app, http, shutdown.clone(), metrics));
    // The offline hook's watcher (a no-op when the hook is off).
    let hooks_task = tokio::spawn(logic.clone().run_hooks(shutdown.clone()));
    rim_logic::grpc::serve(logic, grpc, shutdown).await?;
    http_task.await??;
    hooks_task.await?;
    info!("logic stopped");
    Ok(())
}
