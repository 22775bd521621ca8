//! `Idempotency-Key`: the same key and body within the window get the first
//! answer again and produce nothing new.
//!
//! Kept in memory: the window does not survive a restart, and replicas do not
//! share it. Only final answers are remembered (202 and 4xx); a 503 is
//! forgotten so the caller's retry really tries again. While the first
//! request with a key is still running, a second one gets 409.

use axum::body::Bytes;
use axum::http::StatusCode;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// A finished answer, as sent the first time.
#[derive(Debug, Clone)]
pub struct StoredAnswer {
    pub status: StatusCode,
    pub content_type: &'static str,
    pub body: Bytes,
}

#[derive(Debug)]
enum Entry {
    Running {
        fingerprint: [u8; 32],
    },
    Done {
        fingerprint: [u8; 32],
        answer: StoredAnswer,
        at: Instant,
    },
}

#[derive(Debug)]
pub struct IdempotencyStore {
    window: Duration,
    entries: Mutex<HashMap<String, Entry>>,
}

/// What to do with a request that carries a key.
#[derive(Debug)]
pub enum Begin {
    /// First time: run it, then `finish` the claim.
    Run(Claim),
    /// Seen before with the same body: send this again.
    Replay(StoredAnswer),
    /// Seen before with a different body.
    Mismatch,
    /// The first request with this key has not finished yet.
    InProgress,
}

/// The right to run a keyed request. Dropped unfinished, it frees the key.
#[derive(Debug)]
pub struct Claim {
    store: Arc<IdempotencyStore>,
    key: String,
    done: bool,
}

impl IdempotencyStore {
    pub fn new(window: Duration) -> Arc<Self> {
        Arc::new(Self {
            window,
            entries: Mutex::new(HashMap::new()),
        })
    }

    fn entries(&self) -> MutexGuard<'_, HashMap<String, Entry>> {
        // Every change is a single insert or remove: a poisoned map is still consistent.
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Looks the key up for this route and body.
    pub fn begin(self: &Arc<Self>, route: &str, key: &str, body: &[u8]) -> Begin {
        let fingerprint: [u8; 32] = Sha256::new()
            .chain_update(route)
            .chain_update([0])
            .chain_update(body)
            .finalize()
            .into();
        let scoped = format!("{route} {key}");
        let mut entries = self.entries();
        let window = self.window;
        entries.retain(|_, e| !matches!(e, Entry::Done { at, .. } if at.elapsed() > window));
        match entries.get(&scoped) {
            Some(entry) if entry.fingerprint() != &fingerprint => Begin::Mismatch,
            Some(Entry::Running { .. }) => Begin::InProgress,
            Some(Entry::Done { answer, .. }) => Begin::Replay(answer.clone()),
            None => {
                entries.insert(scoped.clone(), Entry::Running { fingerprint });
                Begin::Run(Claim {
                    store: Arc::clone(self),
                    key: scoped,
                    done: false,
                })
            }
        }
    }
}

impl Entry {
    fn fingerprint(&self) -> &[u8; 32] {
        match self {
            Self::Running { fingerprint } | Self::Done { fingerprint, .. } => fingerprint,
        }
    }
}

impl Claim {
    /// Remembers a final answer (2xx, 4xx); forgets the key otherwise.
    pub fn finish(mut self, answer: StoredAnswer) {
        self.done = true;
        let mut entries = self.store.entries();
        let fingerprint = match entries.get(&self.key) {
            Some(Entry::Running { fingerprint }) => *fingerprint,
            _ => return,
        };
        if answer.status.is_success() || answer.status.is_client_error() {
            entries.insert(
                self.key.clone(),
                Entry::Done {
                    fingerprint,
                    answer,
                    at: Instant::now(),
                },
            );
        } else {
            entries.remove(&self.key);
        }
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        if !self.done {
            self.store.entries().remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16) -> StoredAnswer {
        StoredAnswer {
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::OK),
            content_type: "application/json",
            body: Bytes::from_static(b"{}"),
        }
    }

    #[test]
    fn same_key_and_body_replays_a_different_body_is_a_mismatch() {
        let store = IdempotencyStore::new(Duration::from_secs(60));
        let Begin::Run(claim) = store.begin("/v1/orders", "k", b"a") else {
            panic!("first run")
        };
        assert!(matches!(
            store.begin("/v1/orders", "k", b"a"),
            Begin::InProgress
        ));
        assert!(matches!(
            store.begin("/v1/orders", "k", b"b"),
            Begin::Mismatch
        ));
        claim.finish(answer(202));
        assert!(
            matches!(store.begin("/v1/orders", "k", b"a"), Begin::Replay(a) if a.status == StatusCode::ACCEPTED)
        );
        assert!(matches!(
            store.begin("/v1/orders", "k", b"b"),
            Begin::Mismatch
        ));
        assert!(
            matches!(store.begin("/v1/orders/batch", "k", b"a"), Begin::Run(_)),
            "keys are per route"
        );
    }

    #[test]
    fn unavailable_answers_and_abandoned_claims_free_the_key() {
        let store = IdempotencyStore::new(Duration::from_secs(60));
        let Begin::Run(claim) = store.begin("r", "k", b"a") else {
            panic!()
        };
        claim.finish(answer(503));
        let Begin::Run(claim) = store.begin("r", "k", b"a") else {
            panic!("503 is not remembered")
        };
        drop(claim);
        assert!(matches!(store.begin("r", "k", b"a"), Begin::Run(_)));
    }

    #[test]
    fn answers_expire_after_the_window() {
        let store = IdempotencyStore::new(Duration::ZERO);
        let Begin::Run(claim) = store.begin("r", "k", b"a") else {
            panic!()
        };
        claim.finish(answer(202));
        std::thread::sleep(Duration::from_millis(2));
        assert!(matches!(store.begin("r", "k", b"a"), Begin::Run(_)));
    }
}
