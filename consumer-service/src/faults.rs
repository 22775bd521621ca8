//! Fault injection for demos and tests: off unless configured.
//!
//! `FAULTS="FAIL-T:transient:2;FAIL-P:permanent;DEP-DOWN:outage:3"` — each
//! rule is `<sku prefix>:<kind>[:<times>]`. An order with an item whose sku
//! starts with the prefix fails with that kind: `transient` for its first
//! `times` attempts (then succeeds), `permanent` always, `outage` for its
//! first `times` passes (a dependency "down"; held in place, no attempt
//! burnt). Attempts come from the record's `kafkit.attempt` header, so a
//! rule behaves the same across restarts and in the retry consumer.

use messaging::{Failure, FailureKind};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

#[derive(Debug, Clone)]
pub struct FaultRule {
    pub sku_prefix: String,
    pub kind: FailureKind,
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
            let kind = match *kind {
                "transient" => FailureKind::Transient,
                "permanent" => FailureKind::Permanent,
                "outage" => FailureKind::Outage,
                other => {
                    return Err(format!(
                        "fault kind {other:?} is not transient, permanent or outage"
                    ));
                }
            };
            let times = match times {
                None => u32::MAX,
                Some(t) => t
                    .parse()
                    .map_err(|_| format!("fault times {t:?} is not a number"))?,
            };
            rules.push(FaultRule {
                sku_prefix: (*prefix).to_owned(),
                kind,
                times,
                outages_seen: Arc::default(),
            });
        }
        Ok(Self(rules))
    }
}

impl Faults {
    /// The injected failure for an order with these skus on this attempt, if any.
    pub fn check<'a>(
        &self,
        skus: impl Iterator<Item = &'a str> + Clone,
        attempts_before: u32,
    ) -> Option<Failure> {
        let rule = self
            .0
            .iter()
            .find(|r| skus.clone().any(|sku| sku.starts_with(&r.sku_prefix)))?;
        let message = format!(
            "injected {:?} fault for sku prefix {}",
            rule.kind, rule.sku_prefix
        );
        match rule.kind {
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

    #[test]
    fn rules_parse_and_fail_as_configured() {
        let faults: Faults = "FAIL-T:transient:2; FAIL-P:permanent".parse().unwrap();
        let skus = |s: &'static str| [s].into_iter();
        assert_eq!(
            faults.check(skus("FAIL-T-1"), 0).unwrap().kind,
            FailureKind::Transient
        );
        assert_eq!(
            faults.check(skus("FAIL-T-1"), 1).unwrap().kind,
            FailureKind::Transient
        );
        assert!(
            faults.check(skus("FAIL-T-1"), 2).is_none(),
            "the third attempt succeeds"
        );
        assert_eq!(
            faults.check(skus("FAIL-P"), 9).unwrap().kind,
            FailureKind::Permanent
        );
        assert!(faults.check(skus("BOOK"), 0).is_none());
        assert!("X:sometimes".parse::<Faults>().is_err());
        assert!("".parse::<Faults>().unwrap().0.is_empty());
    }
}
