//! The in-flight window of one partition: which records were taken, which
//! are settled, and how far the offset may be stored.
//!
//! Records enter in offset order and may settle in any order (their sends
//! are acknowledged whenever the broker answers). The offset to store is
//! always the end of the contiguous prefix of settled records: never past a
//! record that is not settled yet. The window keeps each unsettled record
//! (`T`), so a rewind hands them back to be done again without reading them
//! from the broker. It is also the back-pressure bound: a lane takes no
//! record while it is full (by count or by bytes).

use std::collections::VecDeque;

/// How much may be in flight in one partition at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowLimits {
    /// Records taken and not yet settled.
    pub records: usize,
    /// Key and value bytes of those records.
    pub bytes: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Taken; its handler has not handed anything to the producer yet.
    Taken,
    /// Its sends are with the producer, awaiting acknowledgement.
    Sent,
    Settled,
}

#[derive(Debug)]
struct Entry<T> {
    offset: i64,
    bytes: usize,
    state: State,
    record: T,
}

/// Records of one partition between "taken" and "offset stored".
#[derive(Debug)]
pub struct InFlight<T> {
    entries: VecDeque<Entry<T>>,
    bytes: usize,
    /// The offset to store next (one past the settled prefix), once known.
    stored: Option<i64>,
}

impl<T> Default for InFlight<T> {
    fn default() -> Self {
        Self {
            entries: VecDeque::new(),
            bytes: 0,
            stored: None,
        }
    }
}

impl<T> InFlight<T> {
    /// Takes `record`, at `offset`; offsets must grow.
    pub fn push(&mut self, offset: i64, bytes: usize, record: T) {
        debug_assert!(
            self.entries.back().is_none_or(|last| last.offset < offset),
            "offsets enter in order"
        );
        self.entries.push_back(Entry {
            offset,
            bytes,
            state: State::Taken,
            record,
        });
        self.bytes += bytes;
    }

    /// Marks `offset` settled. Returns the new offset to store when the
    /// settled prefix grew, `None` otherwise (or when `offset` is unknown).
    pub fn settle(&mut self, offset: i64) -> Option<i64> {
        let index = self.index_of(offset)?;
        self.entries[index].state = State::Settled;
        let mut advanced = None;
        while let Some(front) = self.entries.front().filter(|e| e.state == State::Settled) {
            advanced = Some(front.offset + 1);
            self.bytes -= front.bytes;
            self.entries.pop_front();
        }
        if advanced.is_some() {
            self.stored = advanced;
        }
        advanced
    }

    /// Takes back every record at `offset` or after, in offset order (the
    /// partition is rewound there). Records before it stay and may still settle.
    pub fn truncate_from(&mut self, offset: i64) -> Vec<T> {
        let keep = self.entries.partition_point(|e| e.offset < offset);
        let mut taken = Vec::with_capacity(self.entries.len() - keep);
        for dropped in self.entries.drain(keep..) {
            self.bytes -= dropped.bytes;
            taken.push(dropped.record);
        }
        taken
    }

    /// Records that `offset`'s sends are with the producer.
    pub fn mark_sent(&mut self, offset: i64) {
        if let Some(index) = self.index_of(offset) {
            self.entries[index].state = State::Sent;
        }
    }

    /// The first record taken and not settled.
    pub fn first_unsettled(&self) -> Option<i64> {
        self.entries
            .iter()
            .find(|e| e.state != State::Settled)
            .map(|e| e.offset)
    }

    /// The first record whose handler has not handed anything to the producer.
    pub fn first_unsent(&self) -> Option<i64> {
        self.entries
            .iter()
            .find(|e| e.state == State::Taken)
            .map(|e| e.offset)
    }

    /// One past the settled prefix, once anything settled.
    pub fn stored(&self) -> Option<i64> {
        self.stored
    }

    pub fn is_full(&self, limits: WindowLimits) -> bool {
        // One record always fits, however large, or a big record would stall.
        !self.entries.is_empty()
            && (self.entries.len() >= limits.records || self.bytes >= limits.bytes)
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    fn index_of(&self, offset: i64) -> Option<usize> {
        self.entries
            .binary_search_by_key(&offset, |e| e.offset)
            .ok()
            .filter(|&i| self.entries[i].state != State::Settled)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_stored_offset_moves_only_over_the_settled_prefix() {
        let mut window = InFlight::<i64>::default();
        for offset in [10, 11, 13, 14] {
            window.push(offset, 100, offset);
        }
        window.mark_sent(11);
        assert_eq!(window.first_unsent(), Some(10));
        assert_eq!(window.settle(11), None, "10 is not settled yet");
        assert_eq!(window.settle(14), None);
        assert_eq!(window.settle(10), Some(12), "10 and 11 settled");
        assert_eq!(window.first_unsettled(), Some(13));
        assert_eq!(window.settle(13), Some(15), "a gap in offsets is no hole");
        assert!(window.is_empty());
        assert_eq!(window.stored(), Some(15));
        assert_eq!(window.settle(13), None, "settling twice changes nothing");
    }

    #[test]
    fn a_rewind_forgets_later_records_and_keeps_earlier_ones() {
        let mut window = InFlight::<i64>::default();
        for offset in 0..5 {
            window.push(offset, 10, offset);
        }
        window.settle(3);
        assert_eq!(window.truncate_from(2), [2, 3, 4], "handed back in order");
        assert_eq!(window.len(), 2);
        assert_eq!(window.settle(3), None, "forgotten");
        assert_eq!(window.settle(1), None);
        assert_eq!(window.settle(0), Some(2));
        window.push(2, 10, 2);
        assert_eq!(window.settle(2), Some(3));
    }

    #[test]
    fn full_by_count_or_by_bytes_but_one_record_always_fits() {
        let limits = WindowLimits {
            records: 2,
            bytes: 1000,
        };
        let mut window = InFlight::<i64>::default();
        assert!(!window.is_full(limits));
        window.push(0, 5000, 0);
        assert!(window.is_full(limits), "over the bytes");
        window.settle(0);
        assert!(!window.is_full(limits));
        window.push(1, 1, 1);
        window.push(2, 1, 2);
        assert!(window.is_full(limits), "at the count");
    }

    /// Offsets with gaps, and an order to settle them in.
    fn offsets_and_order() -> impl Strategy<Value = (Vec<i64>, Vec<usize>)> {
        proptest::collection::vec(1i64..4, 1..60).prop_flat_map(|gaps| {
            let offsets: Vec<i64> = gaps
                .iter()
                .scan(0, |next, gap| {
                    let offset = *next;
                    *next += gap;
                    Some(offset)
                })
                .collect();
            let order = Just((0..offsets.len()).collect::<Vec<_>>()).prop_shuffle();
            (Just(offsets), order)
        })
    }

    proptest! {
        /// Whatever order acknowledgements come in, the stored offset is
        /// never past a record that is not settled, and ends one past the last.
        #[test]
        fn the_stored_offset_never_passes_an_unsettled_record(
            (offsets, order) in offsets_and_order(),
        ) {
            let mut window = InFlight::<i64>::default();
            for &offset in &offsets {
                window.push(offset, 1, offset);
            }
            let mut settled = std::collections::HashSet::new();
            for index in order {
                settled.insert(offsets[index]);
                window.settle(offsets[index]);
                if let Some(stored) = window.stored() {
                    for &o in offsets.iter().filter(|&&o| o < stored) {
                        prop_assert!(settled.contains(&o), "stored {} passes unsettled {}", stored, o);
                    }
                }
            }
            prop_assert_eq!(window.stored(), Some(offsets.last().unwrap() + 1));
            prop_assert!(window.is_empty());
        }

        /// A rewind in the middle of the acknowledgements: what is after the
        /// rewind point is never stored, what is before it still is.
        #[test]
        fn a_rewind_never_lets_the_stored_offset_pass_its_point(
            (offsets, order) in offsets_and_order(),
            cut_at in any::<proptest::sample::Index>(),
            cut_when in any::<proptest::sample::Index>(),
        ) {
            let mut window = InFlight::<i64>::default();
            for &offset in &offsets {
                window.push(offset, 1, offset);
            }
            // The point of a rewind is always a record not settled yet.
            let when = cut_when.index(order.len());
            let mut cut = None;
            for (step, index) in order.iter().enumerate() {
                if step == when {
                    let unsettled: Vec<i64> = order[step..].iter().map(|&i| offsets[i]).collect();
                    let point = unsettled[cut_at.index(unsettled.len())];
                    let _ = window.truncate_from(point);
                    cut = Some(point);
                }
                window.settle(offsets[*index]);
                if let Some(point) = cut {
                    prop_assert!(window.stored().is_none_or(|s| s <= point));
                }
            }
            let cut = cut.unwrap();
            let before: Vec<i64> = offsets.iter().copied().filter(|&o| o < cut).collect();
            prop_assert_eq!(window.stored().filter(|_| !before.is_empty()), before.last().map(|o| o + 1));
            prop_assert!(window.is_empty());
        }
    }
}
