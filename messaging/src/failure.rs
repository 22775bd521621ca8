//! How a failed record is classified before it is routed.

use std::fmt;

/// Whose fault a failure is, which decides where the record goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// May succeed later (a timeout, a flaky dependency): retry tiers, then DLQ.
    Transient,
    /// Will never succeed (validation, business rule, undecodable): DLQ at once.
    Permanent,
    /// Not the record's fault at all (the registry or a dependency is down):
    /// wait and retry in place, burning no attempt, never dead-letter.
    Outage,
}

/// A classified failure: a stable class for grouping, a message, a detail.
///
/// ```
/// use kafkit_messaging::{Failure, FailureKind};
///
/// let failure = Failure::transient("gateway-timeout", "the gateway did not answer in 5 s");
/// assert_eq!(failure.kind, FailureKind::Transient);
/// assert_eq!(failure.class, "gateway-timeout");
/// assert_eq!(
///     failure.to_string(),
///     "gateway-timeout (Transient): the gateway did not answer in 5 s",
/// );
///
/// let refused = Failure::permanent("unsupported-currency", "XTS is not accepted");
/// assert_eq!(refused.kind, FailureKind::Permanent);
///
/// let cause = std::io::Error::other("connection refused");
/// let down = Failure::outage("gateway-down", "the gateway is unreachable").with_detail(&cause);
/// assert_eq!(down.kind, FailureKind::Outage);
/// assert_eq!(down.detail, "connection refused");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// Whose fault it is, which decides where the record goes.
    pub kind: FailureKind,
    /// Short stable name, e.g. `unsupported-currency`, `bad-magic-byte`.
    pub class: String,
    /// One sentence for people.
    pub message: String,
    /// Cause chain, bounded when written to headers.
    pub detail: String,
}

impl Failure {
    fn new(kind: FailureKind, class: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            kind,
            class: class.into(),
            message: message.into(),
            detail: String::new(),
        }
    }

    /// A [`FailureKind::Transient`] failure: retry tiers, then the DLQ.
    pub fn transient(class: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(FailureKind::Transient, class, message)
    }

    /// A [`FailureKind::Permanent`] failure: the DLQ at once.
    pub fn permanent(class: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(FailureKind::Permanent, class, message)
    }

    /// A [`FailureKind::Outage`]: the partition waits and tries again.
    pub fn outage(class: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(FailureKind::Outage, class, message)
    }

    /// Adds the cause chain of `error` as detail.
    pub fn with_detail(mut self, error: &(dyn std::error::Error + 'static)) -> Self {
        let mut chain = vec![error.to_string()];
        let mut source = error.source();
        while let Some(cause) = source {
            chain.push(cause.to_string());
            source = cause.source();
        }
        self.detail = chain.join(": caused by: ");
        self
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({:?}): {}", self.class, self.kind, self.message)
    }
}

impl std::error::Error for Failure {}
