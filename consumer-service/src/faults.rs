//! Fault injection for demos and tests: off unless configured.
//!
//! `FAULTS="FAIL-T:transient:2;FAIL-P:permanent;DEP-DOWN:outage:3"` — each
//! rule is `<sku prefix>:<kind>[:<times>]`. An order with an item whose sku
//! starts with the prefix fails with that kind: `transient` for its first
//! `times` attempts (then succeeds), `permanent` always, `outage` for its
//! first `times` passes (a dependency "down"; held in place, no attempt
//! burnt). Two kinds do not fail: `slow:<ms>` makes the handler wait that
//! long first (a slow dependency), and `panic` makes it panic (a bug).
//! Attempts come from the record's `kafkit.attempt` header, so a rule
//! behaves the same across restarts and in the retry consumer.

use kafkit_messaging::{Failure, FailureKind};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// What a rule does to a matching order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    Fail(FailureKind),
    /// Wait this long before handling.
    Slow(Duration),
    /// Panic in the handler.
    Panic,
}

#[derive(Debug, Clone)]
pub struct FaultRule {
    pub sku_prefix: String,
    pub fault: Fault,
    /// For transient: attempts that fail. For outage: passes that fail.
    pub times: u32,
    /// Outage passes seen so far (outages burn no attempt, so they are counted here).
    outages_seen: Arc<AtomicU32>,
}

/// A list of rules; empty by default.
#[derive(Debug, Clone, Default)]
pub struct Faults(pub Vec<FaultRule>);

impl FromStr for Faults {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut rules = Vec::new();
        for rule in s.split(';').map(str::trim).filter(|r| !r.is_empty()) {
            let parts: Vec<&str> = rule.split(':').collect();
            let (prefix, kind, times) = match parts.as_slice() {
                [prefix, kind] => (prefix, kind, None),
                [prefix, kind, times] => (prefix, kind, Some(times)),
                _ => {
                    return Err(format!(
                        "fault rule {rule:?} is not <sku prefix>:<kind>[:<times>]"
                    ));
                }
            };
            let times = match times {
                None => u32::MAX,
                Some(t) => t
                    .parse()
                    .map_err(|_| format!("fault times {t:?} is not a number"))?,
            };
            let fault = match *kind {
                "transient" => Fault::Fail(FailureKind::Transient),
                "permanent" => Fault::Fail(FailureKind::Permanent),
                "outage" => Fault::Fail(FailureKind::Outage),
                "slow" if times != u32::MAX => Fault::Slow(Duration::from_millis(times.into())),
                "slow" => {
                    return Err(format!(
                        "fault rule {rule:?} needs milliseconds: <sku prefix>:slow:<ms>"
                    ));
                }
                "panic" => Fault::Panic,
                other => {
                    return Err(format!(
                        "fault kind {other:?} is not transient, permanent, outage, slow or panic"
                    ));
                }
            };
            rules.push(FaultRule {
                sku_prefix: (*prefix).to_owned(),
                fault,
                times,
                outages_seen: Arc::default(),
            });
        }
        Ok(Self(rules))
    }
}

impl Faults {
    /// Applies the first rule matching an order with these skus on this
    /// attempt: waits (`slow`), panics (`panic`), or returns the injected
    /// failure, if any.
    pub async fn apply<'a>(
        &self,
        skus: impl Iterator<Item = &'a str> + Clone,
        attempts_before: u32,
    ) -> Option<Failure> {
        let rule = self
            .0
            .iter()
            .find(|r| skus.clone().any(|sku| sku.starts_with(&r.sku_prefix)))?;
        let kind = match rule.fault {
            Fault::Slow(delay) => {
                tokio::time::sleep(delay).await;
                return None;
            }
            Fault::Panic => panic!("injected panic for sku prefix {}", rule.sku_prefix),
            Fault::Fail(kind) => kind,
        };
        let message = format!("injected {kind:?} fault for sku prefix {}", rule.sku_prefix);
        match kind {
            FailureKind::Permanent => Some(Failure::permanent("injected-permanent", message)),
            FailureKind::Transient if attempts_before < rule.times => {
                Some(Failure::transient("injected-transient", message))
            }
            FailureKind::Outage
                if rule.outages_seen.fetch_add(1, Ordering::Relaxed) < rule.times =>
            {
                Some(Failure::outage("injected-outage", message))
            }
            _ => None,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn rules_parse_and_fail_as_configured() {
        let faults: Faults = "FAIL-T:transient:2; FAIL-P:permanent; SLOW:slow:30; BOOM:panic"
            .parse()
            .unwrap();
        let skus = |s: &'static str| [s].into_iter();
        assert_eq!(
            faults.apply(skus("FAIL-T-1"), 0).await.unwrap().kind,
            FailureKind::Transient
        );
        assert_eq!(
            faults.apply(skus("FAIL-T-1"), 1).await.unwrap().kind,
            FailureKind::Transient
        );
        assert!(
            faults.apply(skus("FAIL-T-1"), 2).await.is_none(),
            "the third attempt succeeds"
        );
        assert_eq!(
            faults.apply(skus("FAIL-P"), 9).await.unwrap().kind,
            FailureKind::Permanent
        );
        assert!(faults.apply(skus("BOOK"), 0).await.is_none());
        let started = std::time::Instant::now();
        assert!(faults.apply(skus("SLOW-1"), 0).await.is_none());
        assert!(started.elapsed() >= Duration::from_millis(30), "it waited");
        let boom = tokio::spawn(async move { faults.apply(skus("BOOM-1"), 0).await });
        assert!(boom.await.unwrap_err().is_panic());
        assert!("X:sometimes".parse::<Faults>().is_err());
        assert!(
            "X:slow".parse::<Faults>().is_err(),
            "slow needs milliseconds"
        );
        assert!("".parse::<Faults>().unwrap().0.is_empty());
    }
}
