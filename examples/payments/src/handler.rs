//! Charge through the payment gateway, then announce the settlement.
//!
//! The gateway is called with the event's id as `Idempotency-Key`, so a
//! retried payment is charged once. What the gateway answers decides the
//! route: a timeout, no connection, 408, 429 or 5xx may pass later (a
//! transient failure: the retry tiers, then the dead-letter topic); any other
//! refusal never will (permanent: straight to the dead-letter topic, with the
//! gateway's reason).

use crate::events::{PaymentRequested, PaymentSettled};
use kafkit_events::EventHeaders;
use kafkit_messaging::{Failure, Handler, Input, Outbox};
use reqwest::StatusCode;
use std::time::{Duration, SystemTime};

/// Namespace of `PaymentSettled` ids (UUID v5 of the request's event id).
const SETTLED_ID_NAMESPACE: uuid::Uuid =
    uuid::Uuid::from_u128(0x7061_796d_656e_7473_2d73_6574_746c_6564);

/// The longest gateway answer quoted in a failure.
const QUOTED_ANSWER: usize = 300;

/// The payment gateway's HTTP API: `POST {url}/charges`.
#[derive(Debug, Clone)]
pub struct Gateway {
    client: reqwest::Client,
    charges: String,
}

#[derive(serde::Serialize)]
struct Charge<'a> {
    payment_id: &'a str,
    account_id: &'a str,
    amount_cents: i64,
    currency: &'a str,
}

#[derive(serde::Deserialize)]
struct Charged {
    reference: String,
}

impl Gateway {
    /// A gateway at `url`; a call that takes longer than `timeout` is a transient failure.
    pub fn new(url: &str, timeout: Duration) -> anyhow::Result<Self> {
        Ok(Self {
            client: reqwest::Client::builder().timeout(timeout).build()?,
            charges: format!("{}/charges", url.trim_end_matches('/')),
        })
    }

    /// Charges once per `idempotency_key`; answers the gateway's reference.
    pub async fn charge(
        &self,
        payment: &PaymentRequested,
        idempotency_key: &str,
    ) -> Result<String, Failure> {
        let answer = self
            .client
            .post(&self.charges)
            .header("Idempotency-Key", idempotency_key)
            .json(&Charge {
                payment_id: &payment.payment_id,
                account_id: &payment.account_id,
                amount_cents: payment.amount_cents,
                currency: &payment.currency,
            })
            .send()
            .await
            .map_err(|e| {
                let class = if e.is_timeout() {
                    "gateway-timeout"
                } else {
                    "gateway-unreachable"
                };
                Failure::transient(class, "the payment gateway did not answer").with_detail(&e)
            })?;
        let status = answer.status();
        let body = answer.text().await.unwrap_or_default();
        if status.is_success() {
            return serde_json::from_str::<Charged>(&body)
                .map(|charged| charged.reference)
                .map_err(|e| {
                    // Asking again with the same key is safe.
                    Failure::transient(
                        "gateway-bad-answer",
                        "the gateway's answer has no reference",
                    )
                    .with_detail(&e)
                });
        }
        let quoted: String = body.chars().take(QUOTED_ANSWER).collect();
        let message = format!("the gateway answered {status}: {quoted}");
        let transient = status.is_server_error()
            || status == StatusCode::TOO_MANY_REQUESTS
            || status == StatusCode::REQUEST_TIMEOUT;
        Err(if transient {
            Failure::transient("gateway-unavailable", message)
        } else {
            Failure::permanent("payment-declined", message)
        })
    }
}

/// `PaymentRequested` in, a charge at the gateway, `PaymentSettled` out.
#[derive(Debug, Clone)]
pub struct SettlePayment {
    pub gateway: Gateway,
    pub settled_topic: String,
    /// CloudEvents `source` of the `PaymentSettled` events.
    pub source: String,
}

impl SettlePayment {
    async fn settle(
        &self,
        input: &Input<PaymentRequested>,
        out: &mut Outbox<'_>,
    ) -> Result<(), Failure> {
        let payment = &input.event;
        let reference = self.gateway.charge(payment, &input.event_id).await?;
        let settled = PaymentSettled {
            payment_id: payment.payment_id.clone(),
            account_id: payment.account_id.clone(),
            amount_cents: payment.amount_cents,
            gateway_reference: reference,
            settled_at: now_millis(),
            source_event_id: input.event_id.clone(),
        };
        let id = uuid::Uuid::new_v5(&SETTLED_ID_NAMESPACE, input.event_id.as_bytes());
        let headers = EventHeaders::follow_up::<PaymentSettled>(
            input.headers.as_ref(),
            id.to_string(),
            self.source.clone(),
        );
        // Keyed by account, like the request: one account's events stay in order.
        out.publish(&self.settled_topic, &payment.account_id, &settled, &headers)
            .await
    }
}

impl Handler<PaymentRequested> for SettlePayment {
    fn handle(
        &self,
        input: &Input<PaymentRequested>,
        out: &mut Outbox<'_>,
    ) -> impl std::future::Future<Output = Result<(), Failure>> + Send {
        self.settle(input, out)
    }
}

fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or_default()
}
