//! Typing notices: relayed to the other members of the conversation, never stored. In a group
//! they are coalesced: at most one notice per group per [`GROUP_TYPING_INTERVAL`] leaves an
//! instance, whoever is typing (the client shows "someone is typing" for a few seconds), so a
//! busy group does not turn every keystroke into a frame per member.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::db::conversations as store;
use crate::error::AppError;

use super::service::not_yours;
use super::{Chat, Identity, Notice};

/// Typing notices are not relayed in groups larger than this: nobody reads "300 people are
/// typing", and each notice would cost a delivery per member.
const TYPING_MAX_MEMBERS: usize = 100;
/// A group gets at most one typing notice per this interval (per instance).
pub const GROUP_TYPING_INTERVAL: Duration = Duration::from_secs(1);
/// Groups remembered at most; older entries are dropped when it fills (they are past their
/// interval anyway, or nearly).
const REMEMBERED_GROUPS: usize = 4096;

/// When each group last had a typing notice relayed.
#[derive(Clone, Default)]
pub struct TypingGate {
    last: Arc<Mutex<HashMap<i64, Instant>>>,
}

impl TypingGate {
    /// Whether a notice for `conversation` may go out `now` (and, if so, it counts as sent).
    pub fn admit(&self, conversation: i64, now: Instant) -> bool {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if last
            .get(&conversation)
            .is_some_and(|at| now.duration_since(*at) < GROUP_TYPING_INTERVAL)
        {
            return false;
        }
        if last.len() >= REMEMBERED_GROUPS {
            last.retain(|_, at| now.duration_since(*at) < GROUP_TYPING_INTERVAL);
            if last.len() >= REMEMBERED_GROUPS {
                last.clear();
            }
        }
        last.insert(conversation, now);
        true
    }
}

impl Chat {
    /// Tells the other members of conversation `id` that `from` is typing (see the module).
    pub async fn typing(&self, from: &Identity, id: i64) -> Result<(), AppError> {
        let user_id = from.user_id;
        let others = self
            .db
            .run(move |conn| {
                let members = store::current_members(conn, &[id])?;
                if !members.iter().any(|m| m.user_id == user_id) {
                    return Err(not_yours());
                }
                Ok(members
                    .into_iter()
                    .map(|m| m.user_id)
                    .filter(|&m| m != user_id)
                    .collect::<Vec<i64>>())
            })
            .await?;
        let group = self
            .directory
            .kind_of(id)
            .await?
            .is_some_and(|kind| kind.peer_of(user_id).is_none());
        if others.len() > TYPING_MAX_MEMBERS || (group && !self.typing.admit(id, Instant::now())) {
            return Ok(());
        }
        let notice = Notice::Typing {
            conversation_id: id,
            from: from.username.clone(),
        };
        self.bus.notify(others, &notice);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_notice_per_group_per_interval() {
        let gate = TypingGate::default();
        let t0 = Instant::now();
        assert!(gate.admit(1, t0));
        assert!(!gate.admit(1, t0 + Duration::from_millis(300)), "coalesced");
        assert!(
            gate.admit(2, t0 + Duration::from_millis(300)),
            "another group"
        );
        assert!(
            gate.admit(1, t0 + GROUP_TYPING_INTERVAL),
            "the next interval"
        );
    }

    #[test]
    fn a_full_memory_forgets_what_is_past() {
        let gate = TypingGate::default();
        let t0 = Instant::now();
        for group in 0..REMEMBERED_GROUPS as i64 {
            assert!(gate.admit(group, t0));
        }
        let later = t0 + GROUP_TYPING_INTERVAL;
        assert!(gate.admit(-1, later));
        assert_eq!(
            gate.last.lock().expect("lock").len(),
            1,
            "the stale ones went"
        );
        assert!(gate.admit(0, later), "forgotten: admitted again");
    }
}
