//! The demo's stream of orders, posted to producer-service over HTTP.
//!
//! The mix is fixed by position, so every run tells the same story: out of
//! each ten orders six are plain, two fail transiently and recover (one on
//! the first retry tier, one on the second), one has a currency the business
//! does not take (dead-lettered at once) and one fails every attempt (dead-
//! lettered after the last tier). The failures come from consumer-service's
//! fault injection, keyed by sku prefix; `FAULTS` below is its rule set.

use serde_json::json;

/// consumer-service's fault rules for the demo's skus.
pub const FAULTS: &str = "WOBBLY-:transient:1;SHAKY-:transient:2;CURSED-:transient";

/// What the demo expects of an order it sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    Plain,
    RecoversOnTier1,
    RecoversOnTier2,
    WrongCurrency,
    FailsEveryAttempt,
}

impl Plan {
    /// The plan of the `index`-th order.
    pub fn of(index: usize) -> Self {
        match index % 10 {
            6 => Self::RecoversOnTier1,
            7 => Self::RecoversOnTier2,
            8 => Self::WrongCurrency,
            9 => Self::FailsEveryAttempt,
            _ => Self::Plain,
        }
    }

    /// The JSON body for POST /v1/orders.
    pub fn body(self, index: usize) -> serde_json::Value {
        let (sku, currency) = match self {
            Self::Plain => (["BOOK-42", "MUG-7", "PEN-3"][index % 3], "EUR"),
            Self::RecoversOnTier1 => ("WOBBLY-LAMP", "EUR"),
            Self::RecoversOnTier2 => ("SHAKY-SHELF", "USD"),
            Self::WrongCurrency => ("BOOK-42", "JPY"),
            Self::FailsEveryAttempt => ("CURSED-VASE", "GBP"),
        };
        let quantity = 1 + index % 3;
        json!({
            "customer_id": format!("demo-customer-{}", index % 7),
            "items": [{"sku": sku, "quantity": quantity, "unit_price_cents": 1_250 + 100 * (index % 5)}],
            "currency": currency,
            "note": "kafkit demo",
        })
    }
}

/// The answer of producer-service to one order.
#[derive(Debug)]
pub enum Sent {
    /// 202: on the orders topic under this id.
    Accepted { order_id: String },
    /// Anything else, with the status and problem detail.
    Refused { status: u16, detail: String },
}

/// Posts the `index`-th order.
pub async fn send(client: &reqwest::Client, url: &str, index: usize) -> Sent {
    let response = client
        .post(url)
        .json(&Plan::of(index).body(index))
        .send()
        .await;
    let response = match response {
        Ok(response) => response,
        Err(e) => {
            return Sent::Refused {
                status: 0,
                detail: format!("no answer from {url}: {e}"),
            };
        }
    };
    let status = response.status().as_u16();
    let body: serde_json::Value = response.json().await.unwrap_or_default();
    match (status, body["order_id"].as_str()) {
        (202, Some(order_id)) => Sent::Accepted {
            order_id: order_id.to_owned(),
        },
        _ => Sent::Refused {
            status,
            detail: body["detail"]
                .as_str()
                .or(body["title"].as_str())
                .unwrap_or("no problem detail")
                .to_owned(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_ten_orders_hold_each_plan_and_six_plain_ones() {
        let plans: Vec<Plan> = (0..10).map(Plan::of).collect();
        assert_eq!(plans.iter().filter(|p| **p == Plan::Plain).count(), 6);
        for plan in [
            Plan::RecoversOnTier1,
            Plan::RecoversOnTier2,
            Plan::WrongCurrency,
            Plan::FailsEveryAttempt,
        ] {
            assert_eq!(plans.iter().filter(|p| **p == plan).count(), 1);
        }
    }

    #[tokio::test]
    async fn fault_rules_parse_and_match_the_skus_the_plans_use() {
        let faults: consumer_service::faults::Faults = FAULTS.parse().unwrap_or_default();
        assert_eq!(faults.0.len(), 3);
        let sku = |i: usize| {
            Plan::of(i).body(i)["items"][0]["sku"]
                .as_str()
                .map(str::to_owned)
                .unwrap_or_default()
        };
        assert!(
            faults
                .apply([sku(6).as_str()].into_iter(), 0)
                .await
                .is_some()
        );
        assert!(
            faults
                .apply([sku(6).as_str()].into_iter(), 1)
                .await
                .is_none()
        );
        assert!(
            faults
                .apply([sku(7).as_str()].into_iter(), 1)
                .await
                .is_some()
        );
        assert!(
            faults
                .apply([sku(7).as_str()].into_iter(), 2)
                .await
                .is_none()
        );
        assert!(
            faults
                .apply([sku(9).as_str()].into_iter(), 5)
                .await
                .is_some()
        );
        assert!(
            faults
                .apply([sku(0).as_str()].into_iter(), 0)
                .await
                .is_none()
        );
    }
}
