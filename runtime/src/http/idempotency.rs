//! `Idempotency-Key`: the same key and body within the window get the first
//! answer again and produce nothing new.
//!
//! Kept in memory: the window does not survive a restart, and replicas do not
//! share it. Bounded by bytes (oldest answers evicted first, counted); look-
//! ups are O(1). What is remembered depends on the answer:
//! - final (202, 4xx): replayed to every later request with the key;
//! - partial (a batch with items the broker could not take yet): the next
//!   request with the key runs again, for those items only;
//! - not taken (503, nothing published): forgotten, so a retry really tries.
//!
//! While the first request with a key runs, later ones wait for its answer
//! (it runs in its own task and finishes even if its caller went away).

use axum::body::Bytes;
use axum::http::StatusCode;
use sha2::{Digest, Sha256};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// What an answer means for the requests that repeat it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finality {
    /// Replayed as it is.
    Final,
    /// Kept; the next request with the key resumes it.
    Partial,
    /// Nothing was published: forgotten.
    NotTaken,
}

/// An answer, as sent the first time.
#[derive(Debug, Clone)]
pub struct StoredAnswer {
    /// The HTTP status.
    pub status: StatusCode,
    /// The `Content-Type`.
    pub content_type: &'static str,
    /// The body.
    pub body: Bytes,
    /// Seconds, sent as `Retry-After`.
    pub retry_after: Option<u64>,
    /// Whether later requests with the key get it again, resume it, or run anew.
    pub finality: Finality,
}

/// Bytes an entry is counted for besides its key and body.
const ENTRY_OVERHEAD: usize = 160;

type Answers = watch::Receiver<Option<StoredAnswer>>;

#[derive(Debug)]
enum Entry {
    Running {
        fingerprint: [u8; 32],
        answers: Answers,
    },
    Done {
        fingerprint: [u8; 32],
        answer: StoredAnswer,
        at: Instant,
        /// Tells this entry's place in the eviction queue from stale ones.
        stamp: u64,
        bytes: usize,
    },
}

#[derive(Debug, Default)]
struct Entries {
    by_key: HashMap<String, Entry>,
    /// Done entries, oldest first (a key may appear with an old stamp).
    order: VecDeque<(String, u64)>,
    bytes: usize,
    next_stamp: u64,
}

/// Answers by `Idempotency-Key` (scoped by route), in memory, for a time
/// window and within a byte bound; see the module docs.
#[derive(Debug)]
pub struct IdempotencyStore {
    window: Duration,
    max_bytes: usize,
    entries: Mutex<Entries>,
}

/// What to do with a request that carries a key.
#[derive(Debug)]
pub enum Begin {
    /// First time (or resuming a partial answer): run it, then `finish`.
    Run(Claim),
    /// Seen before with the same body: send this again.
    Replay(StoredAnswer),
    /// Seen before with a different body.
    Mismatch,
    /// The first request with this key is still running: its answer comes here.
    Wait(Answers),
}

/// The right to run a keyed request. Dropped unfinished, it frees the key
/// (or puts back the partial answer it was resuming).
#[derive(Debug)]
pub struct Claim {
    store: Arc<IdempotencyStore>,
    key: String,
    fingerprint: [u8; 32],
    answers: watch::Sender<Option<StoredAnswer>>,
    previous: Option<StoredAnswer>,
    done: bool,
}

impl IdempotencyStore {
    /// A store that keeps answers for `window` and counts at most
    /// `max_bytes` of them, evicting the oldest first.
    pub fn new(window: Duration, max_bytes: usize) -> Arc<Self> {
        Arc::new(Self {
            window,
            max_bytes,
            entries: Mutex::new(Entries::default()),
        })
    }

    fn entries(&self) -> MutexGuard<'_, Entries> {
        // Every change completes under the lock: a poisoned map is still consistent.
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
        entries.expire(self.window);
        let previous = match entries.by_key.get(&scoped) {
            Some(entry) if entry.fingerprint() != &fingerprint => return Begin::Mismatch,
            Some(Entry::Running { answers, .. }) => return Begin::Wait(answers.clone()),
            Some(Entry::Done { answer, .. }) if answer.finality == Finality::Final => {
                return Begin::Replay(answer.clone());
            }
            Some(Entry::Done { answer, .. }) => Some(answer.clone()),
            None => None,
        };
        let (answers, waiting) = watch::channel(None);
        entries.replace(
            &scoped,
            Entry::Running {
                fingerprint,
                answers: waiting,
            },
        );
        Begin::Run(Claim {
            store: Arc::clone(self),
            key: scoped,
            fingerprint,
            answers,
            previous,
            done: false,
        })
    }

    /// Keys remembered or running, and the bytes counted for them.
    pub fn usage(&self) -> (usize, usize) {
        let entries = self.entries();
        (entries.by_key.len(), entries.bytes)
    }
}

impl Entries {
    /// Puts `entry` under `key`, uncounting what it replaces.
    fn replace(&mut self, key: &str, entry: Entry) {
        if let Some(Entry::Done { bytes, .. }) = self.by_key.insert(key.to_owned(), entry) {
            self.bytes -= bytes;
        }
    }

    /// Keeps `answer` under `key`, counted, as the newest in the eviction queue.
    fn remember(&mut self, key: &str, fingerprint: [u8; 32], answer: StoredAnswer) {
        let bytes = ENTRY_OVERHEAD + key.len() + answer.body.len();
        let stamp = self.next_stamp;
        self.next_stamp += 1;
        self.replace(
            key,
            Entry::Done {
                fingerprint,
                answer,
                at: Instant::now(),
                stamp,
                bytes,
            },
        );
        self.bytes += bytes;
        self.order.push_back((key.to_owned(), stamp));
    }

    /// Removes the oldest answers while `evict(at)` says so; returns how
    /// many were removed.
    fn evict_oldest(&mut self, mut evict: impl FnMut(&Self, Instant) -> bool) -> usize {
        let mut evicted = 0;
        while let Some((key, stamp)) = self.order.front() {
            let current = match self.by_key.get(key) {
                Some(Entry::Done {
                    at,
                    stamp: s,
                    bytes,
                    ..
                }) if s == stamp => Some((*at, *bytes)),
                _ => None,
            };
            match current {
                // A stale place: the key was replaced or removed since.
                None => {
                    self.order.pop_front();
                }
                Some((at, bytes)) if evict(self, at) => {
                    if let Some((key, _)) = self.order.pop_front() {
                        self.by_key.remove(&key);
                    }
                    self.bytes -= bytes;
                    evicted += 1;
                }
                Some(_) => break,
            }
        }
        evicted
    }

    fn expire(&mut self, window: Duration) {
        self.evict_oldest(|_, at| at.elapsed() > window);
    }
}

impl Entry {
    fn fingerprint(&self) -> &[u8; 32] {
        match self {
            Self::Running { fingerprint, .. } | Self::Done { fingerprint, .. } => fingerprint,
        }
    }
}

impl Claim {
    /// The partial answer this run resumes, if any.
    pub fn previous(&self) -> Option<&StoredAnswer> {
        self.previous.as_ref()
    }

    /// Where the answer of this run is announced.
    pub fn answers(&self) -> Answers {
        self.answers.subscribe()
    }

    /// Keeps the answer as its finality says and hands it to every waiter;
    /// returns how many older answers were evicted to stay in the bound.
    pub fn finish(mut self, answer: StoredAnswer) -> usize {
        self.done = true;
        let store = Arc::clone(&self.store);
        let mut entries = store.entries();
        let evicted = match answer.finality {
            Finality::NotTaken => {
                entries.by_key.remove(&self.key);
                0
            }
            Finality::Final | Finality::Partial => {
                entries.remember(&self.key, self.fingerprint, answer.clone());
                let max = store.max_bytes;
                entries.evict_oldest(|entries, _| entries.bytes > max)
            }
        };
        drop(entries);
        self.answers.send_replace(Some(answer));
        evicted
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let mut entries = self.store.entries();
        match self.previous.take() {
            // Resuming failed before an answer: the partial one stands.
            Some(previous) => entries.remember(&self.key, self.fingerprint, previous),
            None => {
                entries.by_key.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, finality: Finality) -> StoredAnswer {
        StoredAnswer {
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::OK),
            content_type: "application/json",
            body: Bytes::from_static(b"{}"),
            retry_after: None,
            finality,
        }
    }

    fn store() -> Arc<IdempotencyStore> {
        IdempotencyStore::new(Duration::from_secs(60), 1 << 20)
    }

    #[test]
    fn same_key_and_body_replays_a_different_body_is_a_mismatch() {
        let store = store();
        let Begin::Run(claim) = store.begin("/v1/orders", "k", b"a") else {
            panic!("first run")
        };
        let Begin::Wait(waiting) = store.begin("/v1/orders", "k", b"a") else {
            panic!("a second request waits for the first")
        };
        assert!(matches!(
            store.begin("/v1/orders", "k", b"b"),
            Begin::Mismatch
        ));
        claim.finish(answer(202, Finality::Final));
        assert_eq!(
            waiting.borrow().as_ref().map(|a| a.status),
            Some(StatusCode::ACCEPTED),
            "the waiter gets the first request's answer"
        );
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
    fn answers_not_taken_and_abandoned_claims_free_the_key() {
        let store = store();
        let Begin::Run(claim) = store.begin("r", "k", b"a") else {
            panic!()
        };
        claim.finish(answer(503, Finality::NotTaken));
        let Begin::Run(claim) = store.begin("r", "k", b"a") else {
            panic!("503 is not remembered")
        };
        drop(claim);
        assert!(matches!(store.begin("r", "k", b"a"), Begin::Run(_)));
        assert_eq!(store.usage().1, 0, "nothing counted for what was forgotten");
    }

    #[test]
    fn a_partial_answer_is_resumed_by_the_next_request_and_put_back_if_that_fails() {
        let store = store();
        let Begin::Run(claim) = store.begin("r", "k", b"a") else {
            panic!()
        };
        claim.finish(answer(207, Finality::Partial));
        let Begin::Run(claim) = store.begin("r", "k", b"a") else {
            panic!("a partial answer runs again")
        };
        assert_eq!(
            claim.previous().map(|a| a.status),
            Some(StatusCode::MULTI_STATUS)
        );
        drop(claim);
        let Begin::Run(claim) = store.begin("r", "k", b"a") else {
            panic!("still partial after an abandoned resume")
        };
        assert!(claim.previous().is_some());
        claim.finish(answer(202, Finality::Final));
        assert!(matches!(store.begin("r", "k", b"a"), Begin::Replay(_)));
        assert_eq!(store.usage().0, 1);
    }

    #[test]
    fn answers_expire_after_the_window() {
        let store = IdempotencyStore::new(Duration::ZERO, 1 << 20);
        let Begin::Run(claim) = store.begin("r", "k", b"a") else {
            panic!()
        };
        claim.finish(answer(202, Finality::Final));
        std::thread::sleep(Duration::from_millis(2));
        assert!(matches!(store.begin("r", "k", b"a"), Begin::Run(_)));
    }

    #[test]
    fn the_oldest_answers_are_evicted_to_stay_within_the_byte_bound() {
        let per_entry = ENTRY_OVERHEAD + "r k0".len() + 2;
        let store = IdempotencyStore::new(Duration::from_secs(60), per_entry * 3);
        let mut evicted = 0;
        for i in 0..5 {
            let Begin::Run(claim) = store.begin("r", &format!("k{i}"), b"a") else {
                panic!()
            };
            evicted += claim.finish(answer(202, Finality::Final));
        }
        assert_eq!(evicted, 2);
        assert_eq!(store.usage(), (3, per_entry * 3));
        assert!(
            matches!(store.begin("r", "k0", b"a"), Begin::Run(_)),
            "evicted"
        );
        assert!(
            matches!(store.begin("r", "k4", b"a"), Begin::Replay(_)),
            "kept"
        );
    }
}
