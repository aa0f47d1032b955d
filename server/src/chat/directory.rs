//! Lookups for the hot path: user name ↔ id, the direct conversation of a pair of users, and what
//! kind of conversation an id is. Names never change, a direct conversation, once opened, never
//! ends, and a conversation never changes kind, so entries never go stale; each cache is simply
//! emptied when it grows past its bound. (Membership changes: it is never cached.)

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use crate::db::{Db, conversations, users};
use crate::error::AppError;

const MAX_ENTRIES: usize = 100_000;

#[derive(Clone)]
pub struct Directory {
    db: Db,
    by_name: Arc<RwLock<HashMap<String, i64>>>,
    by_id: Arc<RwLock<HashMap<i64, String>>>,
    /// Pairs (smaller id first) and their direct conversation.
    direct: Arc<RwLock<HashMap<(i64, i64), i64>>>,
    /// Conversations by id: a group, or the direct conversation of a pair.
    kinds: Arc<RwLock<HashMap<i64, ConversationKind>>>,
}

/// What a conversation is, for good.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConversationKind {
    /// Of these two users, smaller id first.
    Direct(i64, i64),
    Group,
}

impl ConversationKind {
    /// In a direct conversation, the user who is not `user_id`.
    pub fn peer_of(self, user_id: i64) -> Option<i64> {
        match self {
            Self::Direct(low, high) => Some(if low == user_id { high } else { low }),
            Self::Group => None,
        }
    }
}

impl Directory {
    pub fn new(db: Db) -> Self {
        Self {
            db,
            by_name: Arc::default(),
            by_id: Arc::default(),
            direct: Arc::default(),
            kinds: Arc::default(),
        }
    }

    /// The direct conversation of `a` and `b`, if they have one; with `open`, it is made if not
    /// (`a` opens it).
    pub async fn direct_conversation(
        &self,
        a: i64,
        b: i64,
        open: bool,
    ) -> Result<Option<i64>, AppError> {
        let pair = (a.min(b), a.max(b));
        if let Some(id) = self.direct.read().ok().and_then(|d| d.get(&pair).copied()) {
            return Ok(Some(id));
        }
        let found = self
            .db
            .run(move |conn| {
                Ok(if open {
                    Some(conversations::open_direct(conn, a, b)?)
                } else {
                    conversations::find_direct(conn, a, b)?
                })
            })
            .await?;
        if let Some(id) = found
            && let Ok(mut known) = self.direct.write()
        {
            if known.len() >= MAX_ENTRIES {
                known.clear();
            }
            known.insert(pair, id);
        }
        Ok(found)
    }

    /// What conversation `id` is, or `None` if there is none.
    pub async fn kind_of(&self, id: i64) -> Result<Option<ConversationKind>, AppError> {
        if let Some(kind) = self.kinds.read().ok().and_then(|k| k.get(&id).copied()) {
            return Ok(Some(kind));
        }
        let row = self
            .db
            .run(move |conn| Ok(conversations::find_many(conn, &[id])?.pop()))
            .await?;
        let kind = row.map(|row| match (row.direct_low, row.direct_high) {
            (Some(low), Some(high)) => ConversationKind::Direct(low, high),
            _ => ConversationKind::Group,
        });
        if let Some(kind) = kind
            && let Ok(mut known) = self.kinds.write()
        {
            if known.len() >= MAX_ENTRIES {
                known.clear();
            }
            known.insert(id, kind);
        }
        Ok(kind)
    }

    fn remember(&self, id: i64, name: &str) {
        if let (Ok(mut by_name), Ok(mut by_id)) = (self.by_name.write(), self.by_id.write()) {
            if by_name.len() >= MAX_ENTRIES {
                by_name.clear();
                by_id.clear();
            }
            by_name.insert(name.to_string(), id);
            by_id.insert(id, name.to_string());
        }
    }

    /// The id and canonical (lower-case) name of `name`, or `user_not_found`.
    pub async fn resolve(&self, name: &str) -> Result<(i64, String), AppError> {
        let canonical = name.trim().to_lowercase();
        if let Some(id) = self
            .by_name
            .read()
            .ok()
            .and_then(|m| m.get(&canonical).copied())
        {
            return Ok((id, canonical));
        }
        let lookup = canonical.clone();
        let user = self
            .db
            .run(move |conn| Ok(users::find_by_username(conn, &lookup)?))
            .await?
            .ok_or_else(|| AppError::user_not_found(name))?;
        self.remember(user.id, &user.username);
        Ok((user.id, user.username))
    }

    /// The name of a user by id (empty if there is none), from the cache or one query.
    pub async fn name_of(&self, user_id: i64) -> Result<String, AppError> {
        let this = self.clone();
        self.db
            .run(move |conn| {
                Ok(this
                    .names(conn, &[user_id])?
                    .remove(&user_id)
                    .unwrap_or_default())
            })
            .await
    }

    /// Names for ids, from the cache or one query (run on the caller's connection).
    pub fn names(
        &self,
        conn: &mut crate::db::DbConnection,
        ids: &[i64],
    ) -> diesel::QueryResult<HashMap<i64, String>> {
        let mut found = HashMap::with_capacity(ids.len());
        let mut missing = Vec::new();
        if let Ok(by_id) = self.by_id.read() {
            for id in ids {
                match by_id.get(id) {
                    Some(name) => {
                        found.insert(*id, name.clone());
                    }
                    None if !missing.contains(id) => missing.push(*id),
                    None => {}
                }
            }
        }
        if !missing.is_empty() {
            for (id, name) in users::names(conn, &missing)? {
                self.remember(id, &name);
                found.insert(id, name);
            }
        }
        Ok(found)
    }
}
