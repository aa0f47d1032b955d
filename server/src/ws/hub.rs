//! Local routing: which connections of which users live on this instance. Delivery takes a
//! shard's read lock and hands each connection a pointer to one shared copy of the serialised
//! frame (a reference-count bump); no allocation per recipient.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use tokio::sync::mpsc;

use super::FrameText;
use crate::auth::revocation::{SessionEnds, SessionRef};

const SHARDS: usize = 32;

pub type ConnId = u64;

/// What a connection's loop receives from the hub.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outbound {
    /// A chat message: carries its id so a resuming connection can skip what it replayed.
    Message {
        id: i64,
        text: FrameText,
    },
    Frame(FrameText),
    /// The connection's session was revoked: the connection closes (4001).
    SessionEnded,
}

/// What a connection's queue holds. One pointer, not the frame itself: tokio allocates a queue's
/// first block of 32 slots when the queue is made, so the slot size is paid by every idle
/// connection.
pub type Delivery = Arc<Outbound>;

struct Conn {
    id: ConnId,
    session_id: i64,
    /// `None` once the connection fell behind: it gets nothing more and its loop closes it.
    tx: Option<mpsc::Sender<Delivery>>,
}

type Shard = RwLock<HashMap<i64, Vec<Conn>>>;

#[derive(Clone)]
pub struct Hub {
    shards: Arc<[Shard]>,
    next_conn: Arc<AtomicU64>,
    instance: u32,
}

impl Hub {
    /// Connection ids carry the instance id in their high half, so they are unique across a
    /// cluster and a delivery addressed to one connection finds its instance.
    pub fn new(instance: u32) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| RwLock::default()).collect(),
            next_conn: Arc::new(AtomicU64::new((u64::from(instance) << 32) | 1)),
            instance,
        }
    }

    pub fn instance(&self) -> u32 {
        self.instance
    }

    /// Whether the connection id was issued by this instance.
    pub fn is_local(&self, conn_id: ConnId) -> bool {
        conn_id >> 32 == u64::from(self.instance)
    }

    fn shard(&self, user_id: i64) -> &Shard {
        // user ids are sequential: the low bits spread them evenly.
        &self.shards[user_id.unsigned_abs() as usize % SHARDS]
    }

    /// Adds a connection of the user's session `session_id`; returns its id and whether it is the
    /// user's first on this instance.
    pub fn register(
        &self,
        user_id: i64,
        session_id: i64,
        tx: mpsc::Sender<Delivery>,
    ) -> (ConnId, bool) {
        let id = self.next_conn.fetch_add(1, Ordering::Relaxed);
        let mut shard = self
            .shard(user_id)
            .write()
            .unwrap_or_else(|e| e.into_inner());
        let conns = shard.entry(user_id).or_default();
        conns.push(Conn {
            id,
            session_id,
            tx: Some(tx),
        });
        (id, conns.len() == 1)
    }

    /// Removes a connection; returns whether it was the user's last on this instance.
    pub fn unregister(&self, user_id: i64, conn_id: ConnId) -> bool {
        let mut shard = self
            .shard(user_id)
            .write()
            .unwrap_or_else(|e| e.into_inner());
        let Some(conns) = shard.get_mut(&user_id) else {
            return false;
        };
        let before = conns.len();
        conns.retain(|c| c.id != conn_id);
        let removed = conns.len() < before;
        if conns.is_empty() {
            shard.remove(&user_id);
        }
        removed && !shard.contains_key(&user_id)
    }

    /// Every user with a connection here.
    pub fn users(&self) -> Vec<i64> {
        self.shards
            .iter()
            .flat_map(|shard| {
                shard
                    .read()
                    .unwrap_or_else(|e| e.into_inner())
                    .keys()
                    .copied()
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    pub fn is_online(&self, user_id: i64) -> bool {
        self.shard(user_id)
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(&user_id)
    }

    /// Queues `out` on one connection, if it is here.
    pub fn send_to_conn(&self, user_id: i64, conn_id: ConnId, out: &Outbound) {
        let shard = self
            .shard(user_id)
            .read()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(tx) = shard
            .get(&user_id)
            .and_then(|conns| conns.iter().find(|c| c.id == conn_id))
            .and_then(|c| c.tx.as_ref())
        {
            // A full queue here is the same slow reader the broadcast path cuts off; its loop
            // closes it once the hub drops it there.
            let _ = tx.try_send(Arc::new(out.clone()));
        }
    }

    /// Queues `out` on every connection of `user_id` except `except`. A connection whose queue
    /// is full is cut off (its loop then closes it): it never slows the others.
    pub fn send_to_user(&self, user_id: i64, out: &Outbound, except: Option<ConnId>) {
        let mut overflowed: Vec<ConnId> = Vec::new();
        {
            let shard = self
                .shard(user_id)
                .read()
                .unwrap_or_else(|e| e.into_inner());
            let Some(conns) = shard.get(&user_id) else {
                return;
            };
            let shared = Arc::new(out.clone());
            for conn in conns {
                if Some(conn.id) == except {
                    continue;
                }
                if let Some(tx) = &conn.tx
                    && let Err(mpsc::error::TrySendError::Full(_)) = tx.try_send(shared.clone())
                {
                    overflowed.push(conn.id);
                }
            }
        }
        if !overflowed.is_empty() {
            let mut shard = self
                .shard(user_id)
                .write()
                .unwrap_or_else(|e| e.into_inner());
            if let Some(conns) = shard.get_mut(&user_id) {
                for conn in conns.iter_mut().filter(|c| overflowed.contains(&c.id)) {
                    tracing::warn!(
                        user_id,
                        conn_id = conn.id,
                        "outbound queue full; dropping connection"
                    );
                    conn.tx = None;
                }
            }
        }
    }
}

impl SessionEnds for Hub {
    fn is_empty(&self) -> bool {
        self.shards
            .iter()
            .all(|shard| shard.read().unwrap_or_else(|e| e.into_inner()).is_empty())
    }

    fn sessions(&self) -> Vec<SessionRef> {
        let mut here: Vec<SessionRef> = Vec::new();
        for shard in self.shards.iter() {
            let shard = shard.read().unwrap_or_else(|e| e.into_inner());
            for (&user_id, conns) in shard.iter() {
                here.extend(conns.iter().map(|c| SessionRef {
                    user_id,
                    session_id: c.session_id,
                }));
            }
        }
        here.sort_unstable_by_key(|s| s.session_id);
        here.dedup();
        here
    }

    /// Tells each of the session's connections it ended and gives it nothing more: its loop
    /// closes it. One whose queue is full is cut off the same way, as a slow reader.
    fn end(&self, session: SessionRef) {
        let mut shard = self
            .shard(session.user_id)
            .write()
            .unwrap_or_else(|e| e.into_inner());
        let Some(conns) = shard.get_mut(&session.user_id) else {
            return;
        };
        let ended = Arc::new(Outbound::SessionEnded);
        for conn in conns
            .iter_mut()
            .filter(|c| c.session_id == session.session_id)
        {
            if let Some(tx) = conn.tx.take() {
                tracing::info!(
                    user_id = session.user_id,
                    conn_id = conn.id,
                    "session revoked; closing its connection"
                );
                let _ = tx.try_send(ended.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(text: &str) -> Outbound {
        Outbound::Frame(FrameText::from(text.to_string()))
    }

    #[test]
    fn delivers_to_every_connection_but_the_excluded_one() {
        let hub = Hub::new(1);
        let (tx1, mut rx1) = mpsc::channel(4);
        let (tx2, mut rx2) = mpsc::channel(4);
        let (c1, first) = hub.register(7, 0, tx1);
        assert!(first);
        let (_c2, first) = hub.register(7, 0, tx2);
        assert!(!first);
        hub.send_to_user(7, &frame("a"), Some(c1));
        assert!(rx1.try_recv().is_err());
        assert_eq!(rx2.try_recv().ok().as_deref(), Some(&frame("a")));
    }

    #[test]
    fn a_full_queue_cuts_off_only_that_connection() {
        let hub = Hub::new(1);
        let (slow_tx, mut slow_rx) = mpsc::channel(1);
        let (fast_tx, mut fast_rx) = mpsc::channel(8);
        hub.register(1, 0, slow_tx);
        hub.register(1, 0, fast_tx);
        for text in ["a", "b", "c"] {
            hub.send_to_user(1, &frame(text), None);
        }
        let mut fast = Vec::new();
        while let Ok(out) = fast_rx.try_recv() {
            if let Outbound::Frame(t) = &*out {
                fast.push(t.to_string());
            }
        }
        assert_eq!(fast, ["a", "b", "c"]);
        assert!(slow_rx.try_recv().is_ok());
        // The hub dropped its sender: the slow connection's loop sees the channel close.
        assert!(matches!(
            slow_rx.try_recv(),
            Err(mpsc::error::TryRecvError::Disconnected)
        ));
    }

    #[test]
    fn ending_a_session_closes_only_its_connections() {
        let hub = Hub::new(1);
        let (phone_tx, mut phone_rx) = mpsc::channel(4);
        let (laptop_tx, mut laptop_rx) = mpsc::channel(4);
        hub.register(5, 10, phone_tx);
        hub.register(5, 11, laptop_tx);
        assert!(!hub.is_empty());
        assert_eq!(hub.sessions().len(), 2);
        hub.end(SessionRef {
            user_id: 5,
            session_id: 10,
        });
        assert_eq!(
            phone_rx.try_recv().ok().as_deref(),
            Some(&Outbound::SessionEnded)
        );
        // Nothing more reaches it; its loop closes it.
        hub.send_to_user(5, &frame("after"), None);
        assert!(matches!(
            phone_rx.try_recv(),
            Err(mpsc::error::TryRecvError::Disconnected)
        ));
        assert_eq!(laptop_rx.try_recv().ok().as_deref(), Some(&frame("after")));
        // Ending it again, or a session that is not here, does nothing.
        hub.end(SessionRef {
            user_id: 5,
            session_id: 10,
        });
        hub.end(SessionRef {
            user_id: 9,
            session_id: 1,
        });
    }

    #[test]
    fn last_unregister_reports_offline() {
        let hub = Hub::new(1);
        let (tx1, _rx1) = mpsc::channel(1);
        let (tx2, _rx2) = mpsc::channel(1);
        let (c1, _) = hub.register(3, 0, tx1);
        let (c2, _) = hub.register(3, 0, tx2);
        assert!(!hub.unregister(3, c1));
        assert!(hub.is_online(3));
        assert!(hub.unregister(3, c2));
        assert!(!hub.is_online(3));
        assert!(!hub.unregister(3, c2), "a second unregister is harmless");
    }
}
