//! Build, serve, shut down.
//!
//! `Application::build` binds the listener (port 0 works), creates the
//! producer and, when asked, the topic; `run_until_stopped` serves until the
//! shutdown future resolves, lets in-flight requests finish, then flushes the
//! producer within the configured grace period.

use crate::idempotency::IdempotencyStore;
use crate::metrics::Metrics;
use crate::routes::{AppState, router};
use crate::settings::Settings;
use anyhow::Context;
use messaging::{EventPublisher, Publisher, TopicSpec, ensure_topics};
use shared_events::EventCodec;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

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
        let state = AppState {
            events: EventPublisher::new(publisher, Arc::new(codec)),
            idempotency: IdempotencyStore::new(Duration::from_secs(
                settings.idempotency_window_secs,
            )),
            metrics: Metrics::new().context("failed to set up metrics")?,
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
