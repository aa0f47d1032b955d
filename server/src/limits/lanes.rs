//! Lanes: per-key queues in front of costly work. The password hasher has one thread per core
//! and serves its queue in order, so without lanes sixteen parallel login loops from one address
//! put sixteen hashes ahead of everyone else's. With a lane per account and per address, one
//! source has at most `in_flight` hashes queued or running at a time, up to `waiting` more requests waiting
//! in its lane (costing nothing but a future), and the rest refused at once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

struct Lane {
    turns: Arc<Semaphore>,
    /// Requests in the lane, running or waiting.
    occupants: usize,
}

/// The lanes of one kind of key (accounts, addresses).
pub struct Lanes {
    lanes: Arc<Mutex<HashMap<String, Lane>>>,
    in_flight: usize,
    /// Most requests in one lane, running or waiting; beyond it they are refused.
    capacity: usize,
}

/// A place in a lane; the work may run once [`Self::turn`] returned. Leaving (dropping it, also
/// while still waiting) frees the place, and the last to leave removes the lane.
pub struct Place {
    lanes: Arc<Mutex<HashMap<String, Lane>>>,
    key: String,
    turns: Arc<Semaphore>,
    permit: Option<OwnedSemaphorePermit>,
}

impl Lanes {
    pub fn new(in_flight: usize, waiting: usize) -> Self {
        let in_flight = in_flight.max(1);
        Self {
            lanes: Arc::default(),
            in_flight,
            capacity: in_flight + waiting,
        }
    }

    /// A place in `key`'s lane, or `None` when the lane is full.
    pub fn enter(&self, key: &str) -> Option<Place> {
        let mut lanes = self.lanes.lock().unwrap_or_else(|e| e.into_inner());
        let lane = lanes.entry(key.to_string()).or_insert_with(|| Lane {
            turns: Arc::new(Semaphore::new(self.in_flight)),
            occupants: 0,
        });
        if lane.occupants >= self.capacity {
            return None;
        }
        lane.occupants += 1;
        Some(Place {
            lanes: self.lanes.clone(),
            key: key.to_string(),
            turns: lane.turns.clone(),
            permit: None,
        })
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lanes.lock().map(|l| l.len()).unwrap_or(0)
    }
}

impl Place {
    /// Waits for this place's turn.
    pub async fn turn(&mut self) {
        if self.permit.is_none() {
            // The semaphore is never closed, so acquiring cannot fail.
            self.permit = self.turns.clone().acquire_owned().await.ok();
        }
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        self.permit.take();
        let mut lanes = self.lanes.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(lane) = lanes.get_mut(&self.key) {
            lane.occupants = lane.occupants.saturating_sub(1);
            if lane.occupants == 0 {
                lanes.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_turn_at_a_time_and_a_bounded_queue() {
        let lanes = Lanes::new(1, 1);
        let mut first = lanes.enter("a").expect("empty lane");
        let mut second = lanes.enter("a").expect("one may wait");
        assert!(lanes.enter("a").is_none(), "the lane is full");
        assert!(lanes.enter("b").is_some(), "another key has its own lane");
        first.turn().await;
        let waiting = tokio::time::timeout(std::time::Duration::from_millis(50), second.turn());
        assert!(waiting.await.is_err(), "the second waits for the first");
        drop(first);
        second.turn().await;
        drop(second);
        assert_eq!(lanes.len(), 0, "an empty lane is removed");
    }
}
