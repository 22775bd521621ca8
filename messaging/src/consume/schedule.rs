//! Which records of a partition may run their handler now.
//!
//! The ordering mode decides: `partition` runs one record at a time in
//! offset order; `key` runs records of the same key one at a time in offset
//! order and different keys side by side; `unordered` runs any record as soon
//! as a slot is free. At most `max_concurrency` run at once. Among records
//! free to start, the lowest offset starts first, so the settled prefix (and
//! with it the stored offset) moves as early as it can.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

/// How records of one partition may overtake each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Ordering {
    /// One record at a time per partition, in offset order (Kafka's own order).
    #[default]
    Partition,
    /// Same key: one at a time, in offset order. Different keys: concurrently.
    Key,
    /// Any record, any order, up to the concurrency limit.
    Unordered,
}

/// What serializes records: everything (partition), the record key, or nothing.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Lock {
    Partition,
    /// Records without a key share this lock: nothing tells them apart.
    Key(Option<Vec<u8>>),
    Own(i64),
}

/// Records taken and not started yet, by lock; at most one running per lock.
#[derive(Debug)]
pub struct Schedule<T> {
    ordering: Ordering,
    max_concurrency: usize,
    waiting: HashMap<Lock, VecDeque<(i64, T)>>,
    /// Locks whose first waiting record may start, by that record's offset.
    ready: BTreeMap<i64, Lock>,
    busy: HashSet<Lock>,
    /// `partition` ordering, the common case, kept free of hashing: one
    /// queue and whether its head is running.
    fifo: VecDeque<(i64, T)>,
    fifo_busy: bool,
}

/// Tells the schedule which record finished, so its lock frees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Running(Lock);

impl<T> Schedule<T> {
    pub fn new(ordering: Ordering, max_concurrency: usize) -> Self {
        let max_concurrency = match ordering {
            Ordering::Partition => 1,
            _ => max_concurrency.max(1),
        };
        Self {
            ordering,
            max_concurrency,
            waiting: HashMap::new(),
            ready: BTreeMap::new(),
            busy: HashSet::new(),
            fifo: VecDeque::new(),
            fifo_busy: false,
        }
    }

    /// True when [`Schedule::push`] needs the record's key.
    pub fn by_key(&self) -> bool {
        self.ordering == Ordering::Key
    }

    /// Queues the record at `offset` (offsets grow); `key` is its Kafka key
    /// when [`Schedule::by_key`], ignored otherwise.
    pub fn push(&mut self, offset: i64, key: Option<Vec<u8>>, item: T) {
        let lock = match self.ordering {
            Ordering::Partition => return self.fifo.push_back((offset, item)),
            Ordering::Key => Lock::Key(key),
            Ordering::Unordered => Lock::Own(offset),
        };
        let queue = self.waiting.entry(lock.clone()).or_default();
        if queue.is_empty() && !self.busy.contains(&lock) {
            self.ready.insert(offset, lock);
        }
        queue.push_back((offset, item));
    }

    /// The next record that may start now, if any; it counts as running
    /// until [`Schedule::finished`] is called with the returned token.
    pub fn start(&mut self) -> Option<(i64, T, Running)> {
        if self.ordering == Ordering::Partition {
            if self.fifo_busy {
                return None;
            }
            let (offset, item) = self.fifo.pop_front()?;
            self.fifo_busy = true;
            return Some((offset, item, Running(Lock::Partition)));
        }
        if self.busy.len() >= self.max_concurrency {
            return None;
        }
        let (_, lock) = self.ready.pop_first()?;
        let queue = self.waiting.get_mut(&lock)?;
        let (offset, item) = queue.pop_front()?;
        if queue.is_empty() {
            self.waiting.remove(&lock);
        }
        self.busy.insert(lock.clone());
        Some((offset, item, Running(lock)))
    }

    /// The record started with `running` is done; the next of its lock may start.
    pub fn finished(&mut self, running: Running) {
        let Running(lock) = running;
        if lock == Lock::Partition {
            self.fifo_busy = false;
            return;
        }
        if self.busy.remove(&lock)
            && let Some((offset, _)) = self.waiting.get(&lock).and_then(|q| q.front())
        {
            self.ready.insert(*offset, lock);
        }
    }

    /// The lowest offset waiting to start.
    #[cfg(test)]
    pub fn first_waiting(&self) -> Option<i64> {
        self.waiting
            .values()
            .chain(std::iter::once(&self.fifo))
            .filter_map(|q| q.front().map(|(offset, _)| *offset))
            .min()
    }

    #[cfg(test)]
    pub fn running(&self) -> usize {
        self.busy.len() + usize::from(self.fifo_busy)
    }

    #[cfg(test)]
    pub fn waiting(&self) -> usize {
        self.waiting.values().map(VecDeque::len).sum::<usize>() + self.fifo.len()
    }

    /// Forgets every waiting record and every running one (a rewind).
    pub fn clear(&mut self) {
        self.waiting.clear();
        self.ready.clear();
        self.busy.clear();
        self.fifo.clear();
        self.fifo_busy = false;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn drain_startable<T>(schedule: &mut Schedule<T>) -> Vec<(i64, Running)> {
        std::iter::from_fn(|| schedule.start().map(|(o, _, r)| (o, r))).collect()
    }

    #[test]
    fn partition_ordering_runs_one_record_at_a_time_in_offset_order() {
        let mut schedule = Schedule::new(Ordering::Partition, 8);
        for (offset, key) in [(0, b"a"), (1, b"b"), (2, b"a")] {
            schedule.push(offset, Some(key.to_vec()), ());
        }
        let mut order = Vec::new();
        while let Some((offset, (), running)) = schedule.start() {
            assert!(schedule.start().is_none(), "only one at a time");
            order.push(offset);
            schedule.finished(running);
        }
        assert_eq!(order, [0, 1, 2]);
    }

    #[test]
    fn key_ordering_runs_different_keys_together_and_the_same_key_in_order() {
        let mut schedule = Schedule::new(Ordering::Key, 8);
        for (offset, key) in [(0, "a"), (1, "b"), (2, "a"), (3, "c"), (4, "b")] {
            schedule.push(offset, Some(key.as_bytes().to_vec()), ());
        }
        let first = drain_startable(&mut schedule);
        assert_eq!(
            first.iter().map(|(o, _)| *o).collect::<Vec<_>>(),
            [0, 1, 3],
            "a, b and c start; the second a and b wait"
        );
        assert_eq!(schedule.first_waiting(), Some(2));
        let (_, running_a) = first.into_iter().next().unwrap();
        schedule.finished(running_a);
        assert_eq!(drain_startable(&mut schedule)[0].0, 2, "a's next");
        assert_eq!(schedule.first_waiting(), Some(4));
    }

    #[test]
    fn records_without_a_key_are_kept_in_order_among_themselves() {
        let mut schedule = Schedule::new(Ordering::Key, 8);
        schedule.push(0, None, ());
        schedule.push(1, None, ());
        schedule.push(2, Some(b"k".to_vec()), ());
        let started: Vec<i64> = drain_startable(&mut schedule)
            .into_iter()
            .map(|(o, _)| o)
            .collect();
        assert_eq!(started, [0, 2]);
    }

    #[test]
    fn unordered_runs_anything_up_to_the_limit_lowest_offset_first() {
        let mut schedule = Schedule::new(Ordering::Unordered, 2);
        for offset in 0..4 {
            schedule.push(offset, Some(b"same".to_vec()), ());
        }
        let started = drain_startable(&mut schedule);
        assert_eq!(started.iter().map(|(o, _)| *o).collect::<Vec<_>>(), [0, 1]);
        assert_eq!(schedule.running(), 2);
        let (_, second) = started.into_iter().nth(1).unwrap();
        schedule.finished(second);
        assert_eq!(schedule.start().unwrap().0, 2);
        assert_eq!(schedule.waiting(), 1);
        schedule.clear();
        assert_eq!((schedule.running(), schedule.waiting()), (0, 0));
        assert!(schedule.start().is_none());
    }
}
