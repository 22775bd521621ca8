//! The reference handler: `OrderPlaced` in, `OrderConfirmed` out.
//!
//! Business rules are permanent failures (a record that breaks them never
//! will pass); the output's event id is derived from the input's event id
//! (its `ce_id`, or one derived from where it was written when it has none),
//! so a redelivered input yields the same output id and downstream can drop
//! the duplicate.

use crate::faults::Faults;
use kafkit_events::EventHeaders;
use kafkit_messaging::{Failure, Handler, Input, Outbox};
use shared_events::{OrderConfirmed, OrderPlaced};
use std::collections::HashSet;
use std::time::SystemTime;

/// Namespace of output event ids (UUID v5 of the input's `ce_id`).
const CONFIRMATION_ID_NAMESPACE: uuid::Uuid =
    uuid::Uuid::from_u128(0x6b61_666b_6974_2d63_6f6e_6669_726d_6564);

/// The `ce_id` an `OrderConfirmed` answering `source_event_id` always gets.
pub fn confirmation_id(source_event_id: &str) -> String {
    uuid::Uuid::new_v5(&CONFIRMATION_ID_NAMESPACE, source_event_id.as_bytes()).to_string()
}

#[derive(Debug, Clone)]
pub struct OrderHandler {
    pub output_topic: String,
    pub allowed_currencies: HashSet<String>,
    pub max_total_cents: i64,
    pub faults: Faults,
    pub source: String,
}

impl OrderHandler {
    fn total(&self, order: &OrderPlaced) -> Result<i64, Failure> {
        order
            .items
            .iter()
            .try_fold(0i64, |sum, item| {
                i64::from(item.quantity)
                    .checked_mul(item.unit_price_cents)
                    .and_then(|line| sum.checked_add(line))
            })
            .ok_or_else(|| {
                Failure::permanent("total-overflow", "the order total does not fit in 64 bits")
            })
    }

    async fn confirm(
        &self,
        input: &Input<OrderPlaced>,
        out: &mut Outbox<'_>,
    ) -> Result<(), Failure> {
        let order = &input.event;
        if let Some(failure) = self
            .faults
            .apply(order.items.iter().map(|i| i.sku.as_str()), input.attempts)
            .await
        {
            return Err(failure);
        }
        if !self.allowed_currencies.contains(&order.currency) {
            return Err(Failure::permanent(
                "unsupported-currency",
                format!(
                    "currency {} is not one of the accepted currencies",
                    order.currency
                ),
            ));
        }
        let total = self.total(order)?;
        if total > self.max_total_cents {
            return Err(Failure::permanent(
                "total-over-limit",
                format!(
                    "order total {total} exceeds the limit of {}",
                    self.max_total_cents
                ),
            ));
        }
        let confirmed = OrderConfirmed {
            order_id: order.order_id.clone(),
            total_cents: total,
            confirmed_at: SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
                .unwrap_or_default(),
            source_event_id: input.event_id.clone(),
        };
        let headers = EventHeaders::follow_up::<OrderConfirmed>(
            input.headers.as_ref(),
            confirmation_id(&input.event_id),
            self.source.clone(),
        );
        out.publish(&self.output_topic, &order.order_id, &confirmed, &headers)
            .await
    }
}

impl Handler<OrderPlaced> for OrderHandler {
    fn handle(
        &self,
        input: &Input<OrderPlaced>,
        out: &mut Outbox<'_>,
    ) -> impl std::future::Future<Output = Result<(), Failure>> + Send {
        self.confirm(input, out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confirmation_ids_are_stable_per_input_and_differ_between_inputs() {
        assert_eq!(confirmation_id("e-1"), confirmation_id("e-1"));
        assert_ne!(confirmation_id("e-1"), confirmation_id("e-2"));
    }
}
