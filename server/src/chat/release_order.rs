//! The order in which the writers' committed messages may be released (rules 2, 3 and 5 of
//! `writer.rs`): several writers INSERT and COMMIT concurrently, so ids commit out of order,
//! yet nothing may be released (acked, shown, delivered) while an earlier id could still appear.
//!
//! A batch registers before its INSERT with a *floor*: the highest id any INSERT has returned so
//! far. Ids are handed out in increasing order of time, so every id the batch gets lies above it;
//! once the INSERT returns, the floor rises to just below the batch's lowest id. Committed items
//! wait until no uncommitted batch can precede them: the *bound* is the lowest floor of the
//! batches not yet committed (or the highest id seen, when none is). Each release takes every
//! committed item up to the bound, in id order, and says which stretch of the log `(prev, last]`
//! it completes. An in-doubt batch simply stays uncommitted until it is settled.
//!
//! Pure: no locks, no I/O. The writer holds it behind a mutex.

use std::collections::{BTreeMap, VecDeque};

/// An item's place in the order: a message id, or [`ReleaseOrder::AT_ONCE`] for an answer that
/// stored nothing (an error), which waits for nobody.
pub type Key = i64;

pub struct ReleaseOrder<T> {
    /// The highest id any INSERT has returned, or the newest stored id at start; `None` before.
    high: Option<i64>,
    /// Where the last logged release ended.
    logged: i64,
    next_batch: u64,
    batches: BTreeMap<u64, InFlight<T>>,
}

struct InFlight<T> {
    floor: i64,
    committed: bool,
    /// After the commit: items not yet released, in key order.
    waiting: VecDeque<(Key, T)>,
}

/// What one release hands on.
pub struct Released<T> {
    /// In key order.
    pub items: Vec<T>,
    /// Everything up to here is released now: readers may show it (the watermark).
    pub bound: i64,
    /// The stretch of the log these items complete, when one of them is to be logged.
    pub log: Option<(i64, i64)>,
}

impl<T> ReleaseOrder<T> {
    pub const AT_ONCE: Key = i64::MIN;

    /// `logged`: where the log stood when the writers started.
    pub fn new(logged: i64) -> Self {
        Self {
            high: None,
            logged,
            next_batch: 0,
            batches: BTreeMap::new(),
        }
    }

    /// The newest stored id, read before any batch: the first floor.
    pub fn start(&mut self, newest: i64) {
        self.high = Some(self.high.map_or(newest, |high| high.max(newest)));
    }

    pub fn is_started(&self) -> bool {
        self.high.is_some()
    }

    /// A batch about to INSERT; returns its number.
    pub fn register(&mut self) -> u64 {
        let number = self.next_batch;
        self.next_batch += 1;
        let floor = self.high.unwrap_or(i64::MIN);
        self.batches.insert(
            number,
            InFlight {
                floor,
                committed: false,
                waiting: VecDeque::new(),
            },
        );
        number
    }

    /// The batch's INSERT returned ids from `lowest` to `highest` (not yet committed).
    pub fn inserted(&mut self, batch: u64, lowest: i64, highest: i64) {
        self.high = Some(self.high.map_or(highest, |high| high.max(highest)));
        if let Some(batch) = self.batches.get_mut(&batch) {
            batch.floor = batch.floor.max(lowest - 1);
        }
    }

    /// The batch committed (or failed, or was settled): its items, each with its key. Ids that
    /// were not noted at an INSERT raise the highest id seen here.
    pub fn committed(&mut self, batch: u64, mut items: Vec<(Key, T)>) {
        if let Some(newest) = items.iter().map(|(key, _)| *key).max()
            && newest != Self::AT_ONCE
        {
            self.high = Some(self.high.map_or(newest, |high| high.max(newest)));
        }
        items.sort_by_key(|(key, _)| *key);
        if let Some(batch) = self.batches.get_mut(&batch) {
            batch.committed = true;
            batch.waiting = items.into();
        }
    }

    /// The batch ended without committing anything (its writer panicked).
    pub fn abandoned(&mut self, batch: u64) {
        self.batches.remove(&batch);
    }

    /// Takes every committed item that no uncommitted batch can precede, in key order.
    /// `logs`: whether an item is to be logged (a new message).
    pub fn take_ready(&mut self, logs: impl Fn(&T) -> bool) -> Released<T> {
        let high = self.high.unwrap_or(i64::MIN);
        let bound = self
            .batches
            .values()
            .filter(|b| !b.committed)
            .map(|b| b.floor)
            .min()
            .unwrap_or(high)
            .min(high);
        let mut ready: Vec<(Key, T)> = Vec::new();
        for batch in self.batches.values_mut().filter(|b| b.committed) {
            while batch.waiting.front().is_some_and(|(key, _)| *key <= bound) {
                ready.extend(batch.waiting.pop_front());
            }
        }
        self.batches
            .retain(|_, b| !b.committed || !b.waiting.is_empty());
        ready.sort_by_key(|(key, _)| *key);
        let log = ready.iter().any(|(_, item)| logs(item)).then(|| {
            let stretch = (self.logged, bound);
            self.logged = bound;
            stretch
        });
        Released {
            items: ready.into_iter().map(|(_, item)| item).collect(),
            bound,
            log,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Items are (id, logged?) pairs.
    type Order = ReleaseOrder<(i64, bool)>;

    fn items(ids: &[i64]) -> Vec<(Key, (i64, bool))> {
        ids.iter().map(|&id| (id, (id, true))).collect()
    }

    fn ids(released: &Released<(i64, bool)>) -> Vec<i64> {
        released.items.iter().map(|(id, _)| *id).collect()
    }

    fn take(order: &mut Order) -> Released<(i64, bool)> {
        order.take_ready(|(_, logged)| *logged)
    }

    #[test]
    fn one_batch_is_released_at_its_commit() {
        let mut order = Order::new(10);
        order.start(10);
        let batch = order.register();
        order.inserted(batch, 11, 12);
        assert!(take(&mut order).items.is_empty(), "not committed yet");
        order.committed(batch, items(&[11, 12]));
        let released = take(&mut order);
        assert_eq!(ids(&released), [11, 12]);
        assert_eq!(released.bound, 12);
        assert_eq!(released.log, Some((10, 12)));
    }

    #[test]
    fn a_later_batch_that_commits_first_waits_for_the_earlier() {
        let mut order = Order::new(0);
        order.start(0);
        let first = order.register();
        let second = order.register();
        order.inserted(first, 1, 3);
        order.inserted(second, 4, 5);
        order.committed(second, items(&[4, 5]));
        let early = take(&mut order);
        assert!(early.items.is_empty(), "4 and 5 wait for 1–3");
        assert_eq!(early.bound, 0, "readers see nothing yet");
        assert_eq!(early.log, None);
        order.committed(first, items(&[1, 2, 3]));
        let released = take(&mut order);
        assert_eq!(ids(&released), [1, 2, 3, 4, 5]);
        assert_eq!(released.log, Some((0, 5)));
    }

    #[test]
    fn a_batch_not_yet_inserted_holds_back_everything_above_its_floor() {
        let mut order = Order::new(0);
        order.start(0);
        let first = order.register();
        order.inserted(first, 1, 2);
        // Registered after 1–2 were handed out: its ids will lie above 2.
        let slow = order.register();
        order.committed(first, items(&[1, 2]));
        let released = take(&mut order);
        assert_eq!(ids(&released), [1, 2], "below the slow batch's floor");
        let third = order.register();
        order.inserted(third, 5, 5);
        order.committed(third, items(&[5]));
        assert!(
            take(&mut order).items.is_empty(),
            "5 may follow ids of the slow batch"
        );
        order.inserted(slow, 3, 4);
        order.committed(slow, items(&[3, 4]));
        let released = take(&mut order);
        assert_eq!(ids(&released), [3, 4, 5]);
        assert_eq!(released.log, Some((2, 5)), "log stretches join up");
    }

    #[test]
    fn an_in_doubt_batch_holds_back_later_ids_until_settled() {
        let mut order = Order::new(0);
        order.start(0);
        let doubt = order.register();
        order.inserted(doubt, 1, 2);
        let next = order.register();
        order.inserted(next, 3, 3);
        order.committed(next, items(&[3]));
        assert!(
            take(&mut order).items.is_empty(),
            "3 waits while 1–2 are in doubt"
        );
        // Settled: only id 2 turned out stored (one row of two, say by a read-back).
        order.committed(doubt, items(&[2]));
        let released = take(&mut order);
        assert_eq!(ids(&released), [2, 3]);
        assert_eq!(released.log, Some((0, 3)));
    }

    #[test]
    fn errors_and_retries_go_at_once_and_are_not_logged() {
        let mut order = Order::new(7);
        order.start(7);
        let holder = order.register();
        order.inserted(holder, 8, 8);
        let failed = order.register();
        // An error stored nothing; a retry's original (id 3) is long released.
        order.committed(failed, vec![(Order::AT_ONCE, (0, false)), (3, (3, false))]);
        let released = take(&mut order);
        assert_eq!(ids(&released), [0, 3]);
        assert_eq!(released.log, None, "nothing new: the log stays at 7");
        order.committed(holder, items(&[8]));
        assert_eq!(take(&mut order).log, Some((7, 8)));
    }

    #[test]
    fn an_abandoned_batch_holds_nothing_back() {
        let mut order = Order::new(0);
        order.start(0);
        let gone = order.register();
        let next = order.register();
        order.inserted(next, 1, 1);
        order.committed(next, items(&[1]));
        assert!(take(&mut order).items.is_empty());
        order.abandoned(gone);
        assert_eq!(ids(&take(&mut order)), [1]);
    }

    #[test]
    fn the_bound_never_goes_back() {
        let mut order = Order::new(0);
        order.start(0);
        let mut last = i64::MIN;
        let mut next_id = 1;
        let mut open = Vec::new();
        for step in 0..200 {
            if step % 3 != 2 {
                let batch = order.register();
                order.inserted(batch, next_id, next_id + 1);
                open.push((batch, next_id));
                next_id += 2;
            }
            if step % 2 == 1
                && let Some((batch, first)) = open.pop()
            {
                order.committed(batch, items(&[first, first + 1]));
            }
            let released = take(&mut order);
            assert!(
                released.bound >= last,
                "step {step}: {} < {last}",
                released.bound
            );
            last = released.bound;
        }
    }
}
