//! The webhook inbox worker: deliveries the HTTP receiver stored (signature verified, 202 sent)
//! are parsed here, after the acknowledgement, and handed to the [`WebhookSink`]; the outcome
//! (a summary of the parsed event, or the parse error) is recorded on the delivery row.
//!
//! The sink is the hook where tracker and forge events will become task inputs; the default
//! only logs. A sink error leaves the row pending, so the next pass tries it again.

use crate::Engine;
use async_trait::async_trait;
pub use baton_adapters::webhook::WebhookEvent;
use baton_adapters::webhook::{self, Source};
use baton_store::{DeliveryRecord, StoreResult};

/// Deliveries handled per pass of the engine loop.
pub(crate) const DELIVERIES_PER_PASS: u32 = 50;

/// Receives every parsed webhook event, once per stored delivery (at least once: a crash between
/// the sink and the row's mark repeats it, so a sink must be idempotent).
#[async_trait]
pub trait WebhookSink: Send + Sync {
    async fn handle(&self, engine: &Engine, delivery: &DeliveryRecord, event: &WebhookEvent) -> Result<(), String>;
}

/// The default sink: logs each event. Turning events into task inputs comes with the trackers.
#[derive(Debug, Default)]
pub struct LogSink;

#[async_trait]
impl WebhookSink for LogSink {
    async fn handle(&self, _engine: &Engine, delivery: &DeliveryRecord, event: &WebhookEvent) -> Result<(), String> {
        tracing::info!("webhook {} {}: {}", delivery.source, delivery.delivery_id, event.summary());
        Ok(())
    }
}

/// What one pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct WebhookPass {
    /// Parsed and handed to the sink.
    pub handled: u32,
    /// Recorded with a parse error (or from an unknown source).
    pub failed: u32,
    /// Left pending: the sink failed and the row will be tried again.
    pub retried: u32,
}

/// Handles up to one batch of pending deliveries.
pub(crate) async fn drain(engine: &Engine) -> StoreResult<WebhookPass> {
    let mut pass = WebhookPass::default();
    let pending = engine.store().pending_deliveries(DELIVERIES_PER_PASS).await?;
    for delivery in pending {
        if delivery.source == crate::telegram::SOURCE {
            let now = engine.clock().now_ms();
            match crate::telegram::handle_delivery(engine, &delivery).await {
                Ok(summary) => {
                    engine.store().mark_delivery(delivery.id, now, Some(&summary), None).await?;
                    pass.handled += 1;
                }
                Err(error) => {
                    tracing::warn!("telegram update {}: handling failed, will retry: {error}", delivery.delivery_id);
                    pass.retried += 1;
                }
            }
            continue;
        }
        let parsed = match Source::from_name(&delivery.source) {
            Some(source) => {
                webhook::parse(source, &delivery.event, delivery.payload.as_bytes()).map_err(|e| e.to_string())
            }
            None => Err(format!("unknown webhook source `{}`", delivery.source)),
        };
        let now = engine.clock().now_ms();
        match parsed {
            Ok(event) => {
                if let Err(error) = engine.webhook_sink().handle(engine, &delivery, &event).await {
                    tracing::warn!(
                        "webhook {} {}: handling failed, will retry: {error}",
                        delivery.source,
                        delivery.delivery_id
                    );
                    pass.retried += 1;
                    continue;
                }
                engine.store().mark_delivery(delivery.id, now, Some(&event.summary()), None).await?;
                pass.handled += 1;
            }
            Err(error) => {
                tracing::warn!("webhook {} {}: {error}", delivery.source, delivery.delivery_id);
                engine.store().mark_delivery(delivery.id, now, None, Some(&error)).await?;
                pass.failed += 1;
            }
        }
    }
    Ok(pass)
}
