//! Puts the message log back in order for one instance's connections.
//!
//! Each connection must receive its user's messages in id order: a client resumes after the
//! highest id it has received (docs/protocol.md), so a lower id arriving later would be skipped
//! for good after a reconnect. Batches reach an instance from its own writer at once and from
//! the other instances through Redis a little later, or never (Redis restarted, the publishing
//! instance killed after its commit, a publish queue overflowed). The sequencer releases a batch
//! only when it follows on from what was released before (`batch.prev` is the position it has
//! reached); a batch that arrives early waits. A gap that stays open for a grace period is read
//! from the database, which has every committed message: the caller asks [`Sequencer::overdue`]
//! which stretch to read and hands the rows to [`Sequencer::filled`]. Batches that arrive after
//! their stretch was read are dropped.
//!
//! Pure: no clock, no I/O. The caller passes the time and does the reading.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::log::LogBatch;

pub struct Sequencer {
    /// Every message up to here has been released (or was read from the database).
    position: i64,
    /// Batches that arrived before their predecessor, by `prev`.
    early: BTreeMap<i64, LogBatch>,
    /// The newest id known to be committed (from the database), if beyond `position`.
    known_newest: i64,
    /// Since when the current gap (nothing released past `position` while more is known) is
    /// open.
    gap_since: Option<Instant>,
}

impl Sequencer {
    /// Starts after `position`: everything up to it is the past (clients replay it).
    pub fn new(position: i64) -> Self {
        Self {
            position,
            early: BTreeMap::new(),
            known_newest: position,
            gap_since: None,
        }
    }

    #[cfg(test)]
    /// Everything up to here has been released.
    fn position(&self) -> i64 {
        self.position
    }

    #[cfg(test)]
    /// Batches waiting for a predecessor.
    fn waiting(&self) -> usize {
        self.early.len()
    }

    /// Takes a batch; returns what may be delivered now, in order.
    pub fn offer(&mut self, batch: LogBatch, now: Instant) -> Vec<LogBatch> {
        if batch.last <= self.position {
            return Vec::new();
        }
        if batch.prev > self.position {
            self.known_newest = self.known_newest.max(batch.last);
            self.early.entry(batch.prev).or_insert(batch);
            self.gap_since.get_or_insert(now);
            return Vec::new();
        }
        let mut ready = vec![self.advance(batch)];
        self.release_waiting(&mut ready);
        self.reset_gap(now);
        ready
    }

    /// The database holds messages up to `newest`.
    pub fn observe(&mut self, newest: i64, now: Instant) {
        if newest > self.known_newest {
            self.known_newest = newest;
        }
        if self.known_newest > self.position {
            self.gap_since.get_or_insert(now);
        }
    }

    /// The stretch `(after, upto]` to read from the database, once a gap has been open for
    /// `grace`: up to the first batch waiting, or to the newest id known.
    pub fn overdue(&self, now: Instant, grace: Duration) -> Option<(i64, i64)> {
        let since = self.gap_since?;
        if now.saturating_duration_since(since) < grace {
            return None;
        }
        let upto = self
            .early
            .keys()
            .next()
            .copied()
            .unwrap_or(self.known_newest);
        (upto > self.position).then_some((self.position, upto))
    }

    /// What the database held in a stretch [`Self::overdue`] named (a batch covering exactly
    /// it); returns what may be delivered now, in order.
    /// While more is missing, the gap stays as old as it was: the next stretch is read at once.
    pub fn filled(&mut self, batch: LogBatch, now: Instant) -> Vec<LogBatch> {
        let since = self.gap_since;
        let ready = self.offer(batch, now);
        if self.gap_since.is_some() {
            self.gap_since = since.or(self.gap_since);
        }
        ready
    }

    /// When the open gap, if any, becomes overdue.
    pub fn gap_deadline(&self, grace: Duration) -> Option<Instant> {
        self.gap_since.map(|since| since + grace)
    }

    /// Releases a batch that follows on (or overlaps what was released: its start is trimmed).
    fn advance(&mut self, mut batch: LogBatch) -> LogBatch {
        batch.trim_to(self.position);
        self.position = batch.last;
        batch
    }

    fn release_waiting(&mut self, ready: &mut Vec<LogBatch>) {
        while let Some(entry) = self.early.first_entry() {
            if *entry.key() > self.position {
                break;
            }
            let batch = entry.remove();
            if batch.last > self.position {
                ready.push(self.advance(batch));
            }
        }
    }

    fn reset_gap(&mut self, now: Instant) {
        self.gap_since =
            (self.known_newest > self.position || !self.early.is_empty()).then_some(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::log::LogEntry;
    use crate::ws::FrameText;

    const GRACE: Duration = Duration::from_millis(100);

    fn batch(prev: i64, ids: &[i64]) -> LogBatch {
        LogBatch {
            prev,
            last: ids.last().copied().unwrap_or(prev),
            entries: ids
                .iter()
                .map(|&id| LogEntry {
                    id,
                    sender_id: 1,
                    recipients: std::sync::Arc::from([1, 2]),
                    except: 0,
                    frame: FrameText::from(id.to_string()),
                })
                .collect(),
        }
    }

    fn ids(batches: &[LogBatch]) -> Vec<i64> {
        batches
            .iter()
            .flat_map(|b| b.entries.iter().map(|e| e.id))
            .collect()
    }

    #[test]
    fn batches_in_order_pass_straight_through() {
        let now = Instant::now();
        let mut seq = Sequencer::new(10);
        assert_eq!(ids(&seq.offer(batch(10, &[11, 12]), now)), [11, 12]);
        assert_eq!(ids(&seq.offer(batch(12, &[13]), now)), [13]);
        assert_eq!(seq.position(), 13);
        assert_eq!(seq.overdue(now + GRACE * 10, GRACE), None);
    }

    #[test]
    fn an_early_batch_waits_for_the_one_before_it() {
        let now = Instant::now();
        let mut seq = Sequencer::new(10);
        // The local writer's batch arrives before another instance's earlier one.
        assert!(seq.offer(batch(15, &[16, 17]), now).is_empty());
        assert_eq!(seq.waiting(), 1);
        assert_eq!(ids(&seq.offer(batch(10, &[12, 15]), now)), [12, 15, 16, 17]);
        assert_eq!(seq.position(), 17);
        assert_eq!(seq.overdue(now + GRACE * 10, GRACE), None);
    }

    #[test]
    fn a_gap_is_read_from_the_database_after_the_grace_period() {
        let now = Instant::now();
        let mut seq = Sequencer::new(10);
        assert!(seq.offer(batch(20, &[21]), now).is_empty());
        assert_eq!(seq.overdue(now + GRACE / 2, GRACE), None, "still in grace");
        assert_eq!(seq.overdue(now + GRACE, GRACE), Some((10, 20)));
        // The database had 13 and 18 in (10, 20]: delivered, then the waiting batch.
        let later = now + GRACE;
        assert_eq!(
            ids(&seq.filled(batch(10, &[13, 18]).with_last(20), later)),
            [13, 18, 21]
        );
        // The lost batch turns up after all: dropped, nothing twice.
        assert!(
            seq.offer(batch(10, &[13, 18]).with_last(20), later)
                .is_empty()
        );
        assert_eq!(seq.position(), 21);
    }

    #[test]
    fn the_newest_id_in_the_database_reveals_a_batch_nobody_published() {
        let now = Instant::now();
        let mut seq = Sequencer::new(10);
        seq.observe(10, now);
        assert_eq!(seq.overdue(now + GRACE, GRACE), None, "nothing beyond");
        seq.observe(14, now);
        assert_eq!(seq.overdue(now + GRACE, GRACE), Some((10, 14)));
        // The batch arrives within the grace period: no reading needed.
        assert_eq!(ids(&seq.offer(batch(10, &[14]), now)), [14]);
        assert_eq!(seq.overdue(now + GRACE * 2, GRACE), None);
    }

    #[test]
    fn the_grace_period_restarts_at_each_step_forward() {
        let now = Instant::now();
        let mut seq = Sequencer::new(0);
        assert!(seq.offer(batch(5, &[6]), now).is_empty());
        assert!(seq.offer(batch(9, &[10]), now).is_empty());
        let later = now + GRACE;
        assert_eq!(ids(&seq.offer(batch(0, &[5]), later)), [5, 6]);
        assert_eq!(seq.overdue(later + GRACE / 2, GRACE), None);
        assert_eq!(seq.overdue(later + GRACE, GRACE), Some((6, 9)));
    }

    #[test]
    fn an_overlapping_batch_delivers_only_what_is_new() {
        let now = Instant::now();
        let mut seq = Sequencer::new(0);
        seq.observe(3, now);
        assert_eq!(ids(&seq.filled(batch(0, &[2, 3]), now)), [2, 3]);
        assert_eq!(ids(&seq.offer(batch(1, &[2, 3, 4]), now)), [4]);
        assert_eq!(seq.position(), 4);
    }

    #[test]
    fn a_long_gap_is_read_page_after_page_without_waiting_again() {
        let now = Instant::now();
        let mut seq = Sequencer::new(0);
        seq.observe(3000, now);
        let later = now + GRACE;
        assert_eq!(seq.overdue(later, GRACE), Some((0, 3000)));
        // A page ends at its last row: the rest is overdue at once.
        assert_eq!(seq.filled(batch(0, &[1, 1000]), later).len(), 1);
        assert_eq!(seq.overdue(later, GRACE), Some((1000, 3000)));
        seq.filled(batch(1000, &[3000]), later);
        assert_eq!(seq.overdue(later + GRACE * 10, GRACE), None);
        assert_eq!(seq.gap_deadline(GRACE), None);
    }

    #[test]
    fn a_stretch_with_nothing_in_it_moves_the_position() {
        let now = Instant::now();
        let mut seq = Sequencer::new(0);
        assert!(seq.offer(batch(4, &[5]), now).is_empty());
        // Ids 1–4 were taken by an insert that rolled back: the database has nothing there.
        assert_eq!(ids(&seq.filled(LogBatch::empty(0, 4), now + GRACE)), [5]);
    }

    impl LogBatch {
        fn with_last(mut self, last: i64) -> Self {
            self.last = last;
            self
        }
    }
}
