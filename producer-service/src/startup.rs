//! Build, serve, shut down.
//!
//! `Application::build` binds the listener (port 0 works), creates the
//! producer and, when asked, the topic; `run_until_stopped` serves until the
//! shutdown future resolves, lets in-flight requests finish, then flushes the
//! producer within the configured grace period.

use crate::routes::{AppState, RETRY_AFTER_SECS, router};
use crate::settings::Settings;
use anyhow::Context;
use kafkit_events::EventCodec;
use kafkit_messaging::{EventPublisher, Publisher, TopicSpec, ensure_topics};
use kafkit_runtime::http::{HttpMetrics, IdempotencyStore, Ingest};
use shared_events::OrderPlaced;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// How often brokers are probed while they answer (every 500 ms while not).
const BROKER_PROBE_EVERY: Duration = Duration::from_secs(2);
/// How often the registry is asked for the event's schema id (answered from
/// the cache once known, so this costs nothing after the first success).
const REGISTRY_PROBE_EVERY: Duration = Duration::from_secs(2);

/// Keeps "the event's schema id is known" current for `/readyz` (asked
/// once before this returns), until nobody reads it any more.
async fn watch_registry(
    codec: Arc<EventCodec>,
    topic: String,
) -> watch::Receiver<Result<(), String>> {
    let ask = move || {
        let (codec, topic) = (Arc::clone(&codec), topic.clone());
        async move {
            match tokio::time::timeout(REGISTRY_PROBE_EVERY, codec.schema_id::<OrderPlaced>(&topic))
                .await
            {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err(format!("no answer within {REGISTRY_PROBE_EVERY:?}")),
            }
        }
    };
    let (states, state) = watch::channel(ask().await);
    tokio::spawn(async move {
        while !states.is_closed() {
            tokio::time::sleep(REGISTRY_PROBE_EVERY).await;
            let _previous = states.send_replace(ask().await);
        }
    });
    state
}

#[derive(Debug)]
pub struct Application {
    listener: TcpListener,
    state: AppState,
}

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let kafka = settings.kafka_settings();
        if settings.create_topics {
            let topic = TopicSpec::new(&settings.topic, settings.topic_partitions);
            // The service still starts when the broker is down; requests get 503 until it is back.
            if let Err(e) = ensure_topics(&kafka, &[topic]).await {
                tracing::warn!(topic = settings.topic, error = %e, "could not create the topic at start-up");
            }
        }
        let publisher = Publisher::new(&kafka, &settings.producer_settings())
            .context("failed to create the Kafka producer")?;
        let codec = EventCodec::new(settings.codec_settings())
            .context("failed to configure the schema registry client")?;
        let listener = TcpListener::bind(settings.listen)
            .await
            .with_context(|| format!("failed to listen on {}", settings.listen))?;
        let codec = Arc::new(codec);
        let (brokers, registry) = tokio::join!(
            publisher.watch_brokers(&settings.topic, BROKER_PROBE_EVERY),
            watch_registry(Arc::clone(&codec), settings.topic.clone())
        );
        let metrics = HttpMetrics::new("producer-service").context("failed to set up metrics")?;
        let idempotency = IdempotencyStore::new(
            Duration::from_secs(settings.idempotency_window_secs),
            settings.idempotency_max_bytes,
        );
        let state = AppState {
            events: EventPublisher::new(publisher, codec),
            ingest: Ingest::new(
                idempotency,
                brokers.clone(),
                settings.answer_deadline(),
                RETRY_AFTER_SECS,
                metrics.clone(),
            ),
            brokers,
            registry,
            metrics,
            settings: Arc::new(settings),
        };
        Ok(Self { listener, state })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    /// Serves until `shutdown`, then flushes what is still in flight.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let addr = self.local_addr();
        let publisher = self.state.events.publisher().clone();
        let metrics = self.state.metrics.clone();
        let grace = Duration::from_secs(self.state.settings.shutdown_grace_secs);
        tracing::info!(%addr, topic = self.state.settings.topic, "producer-service listening");
        axum::serve(self.listener, router(self.state))
            .with_graceful_shutdown(shutdown)
            .await?;
        let in_flight = publisher.in_flight();
        tracing::info!(
            in_flight,
            "stopped accepting requests; flushing the producer"
        );
        let flushed = publisher.flush(grace).await.with_context(|| {
            format!(
                "{} records were not flushed within {grace:?}",
                publisher.in_flight()
            )
        });
        metrics.shutdown();
        flushed
    }
}
