//! Lookups for the hot path: user name ↔ id, and which pairs of users have a conversation. Names
//! never change and a conversation, once it has a message, never ends, so entries never go
//! stale; each cache is simply emptied when it grows past its bound.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};

use crate::db::{Db, messages, users};
use crate::error::AppError;

const MAX_ENTRIES: usize = 100_000;

#[derive(Clone)]
pub struct Directory {
    db: Db,
    by_name: Arc<RwLock<HashMap<String, i64>>>,
    by_id: Arc<RwLock<HashMap<i64, String>>>,
    /// Pairs (smaller id first) known to have a conversation.
    talked: Arc<RwLock<HashSet<(i64, i64)>>>,
}

impl Directory {
    pub fn new(db: Db) -> Self {
        Self {
            db,
            by_name: Arc::default(),
            by_id: Arc::default(),
            talked: Arc::default(),
        }
    }

    /// Whether `a` and `b` have a conversation (a message between them).
    pub async fn have_talked(&self, a: i64, b: i64) -> Result<bool, AppError> {
        let pair = (a.min(b), a.max(b));
        if self.talked.read().is_ok_and(|t| t.contains(&pair)) {
            return Ok(true);
        }
        let talked = self
            .db
            .run(move |conn| Ok(messages::newest_between(conn, pair.0, pair.1)?.is_some()))
            .await?;
        if talked && let Ok(mut known) = self.talked.write() {
            if known.len() >= MAX_ENTRIES {
                known.clear();
            }
            known.insert(pair);
        }
        Ok(talked)
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
