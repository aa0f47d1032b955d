//! A conversation's history, page by page, as one of its members reads it.

use serde::Serialize;
use ts_rs::TS;
use utoipa::ToSchema;

use crate::db::events::{self, PageCursor};
use crate::error::AppError;

use super::{Chat, Identity, MessageView};

#[derive(Debug, Serialize, ToSchema, TS)]
pub struct HistoryPage {
    /// Oldest first.
    pub messages: Vec<MessageView>,
    /// Whether more messages lie beyond this page in the direction asked.
    pub has_more: bool,
}

impl Chat {
    /// A page of a conversation the user belongs to, oldest first.
    pub async fn history(
        &self,
        user: &Identity,
        id: i64,
        cursor: PageCursor,
        limit: i64,
    ) -> Result<HistoryPage, AppError> {
        let this = self.clone();
        let user_id = user.user_id;
        self.db
            .run(move |conn| {
                let me = Self::membership(conn, user_id, id)?;
                let upto = this.writer.visible_up_to()?;
                let mut rows = events::page(conn, id, cursor, upto, limit + 1)?;
                // Nothing from before the member joined.
                rows.retain(|row| me.sees(row.seq));
                let has_more = rows.len() as i64 > limit;
                if has_more {
                    // The extra row lies beyond the page: the oldest when paging back, the
                    // newest when paging forward.
                    match cursor {
                        PageCursor::After(_) => {
                            rows.pop();
                        }
                        _ => {
                            rows.remove(0);
                        }
                    }
                }
                Ok(HistoryPage {
                    messages: this.views(conn, &rows)?,
                    has_more,
                })
            })
            .await
    }
}
