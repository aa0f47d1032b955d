use std::collections::{HashMap, HashSet};

use serde::Serialize;
use tokio::sync::oneshot;
use ts_rs::TS;
use utoipa::ToSchema;

use crate::accounts::UserView;
use crate::bus::Bus;
use crate::bus::delivery::{LogChannel, LogSource};
use crate::bus::log::{LogBatch, LogEntry};
use crate::db::events::{self, EventRow, NewEvent, PageCursor};
use crate::db::{self, Db, DbConnection, conversations, users};
use crate::error::{AppError, ErrorCode, FieldError};
use crate::ws::hub::{ConnId, Outbound};
use crate::ws::protocol::ServerFrame;

use super::writer::{PendingMessage, Stored};
use super::{
    Directory, MAX_BODY_CHARS, MAX_CLIENT_MSG_ID_LEN, MessageKind, MessageView, MessageWriter,
    Presence, PresenceStatus,
};

/// Who is acting: always taken from the authenticated token, never from a frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub user_id: i64,
    pub username: String,
}

/// Tunables for replay and storage.
#[derive(Debug, Clone, Copy)]
pub struct ChatLimits {
    /// Messages sent per replay page.
    pub replay_page: i64,
    /// More missed messages than this: the client is told to resync over REST.
    pub replay_max: i64,
    /// Message writer threads; `None`: the backend's default.
    pub message_writers: Option<usize>,
}

#[derive(Debug, Serialize, ToSchema, TS)]
pub struct HistoryPage {
    /// Oldest first.
    pub messages: Vec<MessageView>,
    /// Whether more messages lie beyond this page in the direction asked.
    pub has_more: bool,
}

#[derive(Debug, Serialize, ToSchema, TS)]
pub struct ConversationView {
    pub peer: UserView,
    pub presence: Presence,
    pub last_message: MessageView,
    pub unread_count: i64,
    /// The newest message id the user has read in this conversation (0: none).
    pub last_read_id: i64,
    /// How far the peer has read the user's messages (0: none): "read" ticks after a reload.
    pub peer_last_read_id: i64,
}

#[derive(Debug, Serialize, ToSchema, TS)]
pub struct ConversationPage {
    /// Most recent first.
    pub conversations: Vec<ConversationView>,
    /// Pass as `before` for the next page; absent on the last one.
    pub next_before: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema, TS, Clone)]
pub struct ReadState {
    pub peer: String,
    pub up_to: i64,
    pub unread: i64,
}

/// What a resuming connection is sent before live traffic.
pub enum Replay {
    Pages(Vec<Vec<MessageView>>),
    TooLarge { newest_id: i64 },
}

#[derive(Clone)]
pub struct Chat {
    db: Db,
    bus: Bus,
    writer: MessageWriter,
    directory: Directory,
    limits: ChatLimits,
}

fn field(field: &'static str, code: &'static str, message: impl Into<String>) -> AppError {
    AppError::validation(vec![FieldError {
        field,
        code,
        message: message.into(),
    }])
}

impl Chat {
    /// Starts the log's gap reader on `log` (made before the bus, which feeds it other
    /// instances' batches) and the message writers. `log_start`: the newest message id at
    /// start-up.
    pub fn new(db: Db, bus: Bus, log: LogChannel, log_start: i64, limits: ChatLimits) -> Self {
        let directory = Directory::new(db.clone());
        let sink = log.start(
            bus.redis().cloned(),
            StoredLog {
                db: db.clone(),
                directory: directory.clone(),
            },
        );
        let cluster = bus.redis().is_some();
        let writer =
            MessageWriter::start(db.clone(), sink, cluster, log_start, limits.message_writers);
        Self {
            directory,
            db,
            bus,
            writer,
            limits,
        }
    }

    pub fn bus(&self) -> &Bus {
        &self.bus
    }

    /// The id and canonical name of a user, or `user_not_found`.
    pub async fn resolve_user(&self, name: &str) -> Result<(i64, String), AppError> {
        self.directory.resolve(name).await
    }

    /// Stores a message the server writes itself (a missed call) and fans it out.
    pub async fn store_system_message(
        &self,
        from: &Identity,
        to: &Identity,
        kind: MessageKind,
        body: String,
        key: String,
    ) -> Result<Stored, AppError> {
        let conversation = self.open_direct(from.user_id, to.user_id).await?;
        self.store(
            NewEvent::new(
                conversation,
                from.user_id,
                kind.as_str(),
                body,
                key,
                db::now(),
            ),
            from.username.clone(),
            to.user_id,
            to.username.clone(),
            None,
        )
        .await
    }

    /// The direct conversation of two users, opened by `a` if they have none yet.
    async fn open_direct(&self, a: i64, b: i64) -> Result<i64, AppError> {
        self.directory
            .direct_conversation(a, b, true)
            .await?
            .ok_or_else(|| AppError::internal("an opened conversation was not found"))
    }

    /// Stores a direct message and returns it once committed. The same `client_msg_id` again
    /// returns the original and stores nothing.
    pub async fn send(
        &self,
        sender: &Identity,
        origin: Option<ConnId>,
        to: &str,
        body: &str,
        client_msg_id: &str,
    ) -> Result<Stored, AppError> {
        let body = body.trim();
        let length = body.chars().count();
        if length == 0 {
            return Err(field("body", "required", "must not be blank"));
        }
        if length > MAX_BODY_CHARS {
            return Err(field(
                "body",
                "too_long",
                format!("must be at most {MAX_BODY_CHARS} characters"),
            ));
        }
        if client_msg_id.is_empty() || client_msg_id.len() > MAX_CLIENT_MSG_ID_LEN {
            return Err(field(
                "client_msg_id",
                "invalid",
                format!("must be 1–{MAX_CLIENT_MSG_ID_LEN} bytes"),
            ));
        }
        let (recipient_id, recipient_name) = self.directory.resolve(to).await?;
        if recipient_id == sender.user_id {
            return Err(field("to", "self", "cannot send a message to yourself"));
        }
        let conversation = self.open_direct(sender.user_id, recipient_id).await?;
        self.store(
            NewEvent::new(
                conversation,
                sender.user_id,
                MessageKind::Text.as_str(),
                body.to_string(),
                client_msg_id.to_string(),
                db::now(),
            ),
            sender.username.clone(),
            recipient_id,
            recipient_name,
            origin,
        )
        .await
    }

    async fn store(
        &self,
        row: NewEvent,
        sender_name: String,
        recipient_id: i64,
        recipient_name: String,
        origin: Option<ConnId>,
    ) -> Result<Stored, AppError> {
        let (reply, stored) = oneshot::channel();
        self.writer
            .store(PendingMessage {
                row,
                sender_name,
                recipient_id,
                recipient_name,
                origin,
                reply: Some(reply),
            })
            .await?;
        stored
            .await
            .map_err(|_| AppError::internal("message writer dropped a reply"))?
    }

    fn views(
        &self,
        conn: &mut DbConnection,
        rows: &[EventRow],
    ) -> Result<Vec<MessageView>, AppError> {
        Ok(addressed(&self.directory, conn, rows)?
            .into_iter()
            .map(|(view, _)| view)
            .collect())
    }

    /// Everything newer than `after` for `user`, in pages, or word that it is too much.
    pub async fn replay(&self, user: &Identity, after: i64) -> Result<Replay, AppError> {
        let this = self.clone();
        let user_id = user.user_id;
        self.db
            .run(move |conn| {
                let limits = this.limits;
                // Read before the queries: nothing above it may be shown yet.
                let upto = this.writer.visible_up_to()?;
                let missed = events::count_after_for_user(
                    conn,
                    user_id,
                    after,
                    upto,
                    limits.replay_max + 1,
                )?;
                if missed > usize::try_from(limits.replay_max).unwrap_or(usize::MAX) {
                    let newest_id = events::newest_for_user(conn, user_id, upto)?.unwrap_or(after);
                    return Ok(Replay::TooLarge { newest_id });
                }
                let mut pages = Vec::new();
                let mut cursor = after;
                loop {
                    let rows =
                        events::after_for_user(conn, user_id, cursor, upto, limits.replay_page)?;
                    let Some(last) = rows.last() else { break };
                    cursor = last.seq;
                    let full = rows.len() as i64 == limits.replay_page;
                    pages.push(this.views(conn, &rows)?);
                    if !full {
                        break;
                    }
                }
                Ok(Replay::Pages(pages))
            })
            .await
    }

    /// A page of the conversation between `user` and `peer`, oldest first.
    pub async fn history(
        &self,
        user: &Identity,
        peer: &str,
        cursor: PageCursor,
        limit: i64,
    ) -> Result<HistoryPage, AppError> {
        let (peer_id, _) = self.directory.resolve(peer).await?;
        let Some(conversation) = self
            .directory
            .direct_conversation(user.user_id, peer_id, false)
            .await?
        else {
            return Ok(HistoryPage {
                messages: Vec::new(),
                has_more: false,
            });
        };
        let this = self.clone();
        self.db
            .run(move |conn| {
                let upto = this.writer.visible_up_to()?;
                let mut rows = events::page(conn, conversation, cursor, upto, limit + 1)?;
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

    /// Presence from whether the user is online and when they were last seen.
    fn presence_of(online: bool, last_seen: Option<time::PrimitiveDateTime>) -> Presence {
        if online {
            Presence {
                status: PresenceStatus::Online,
                last_seen: None,
            }
        } else {
            Presence {
                status: PresenceStatus::Offline,
                last_seen: last_seen.map(|t| t.assume_utc()),
            }
        }
    }

    /// Which of `users` have a connection anywhere: this instance's hub, and with Redis every
    /// instance (falling back to this one's view while Redis is away).
    pub async fn online(&self, users: &[i64]) -> HashSet<i64> {
        let mut online: HashSet<i64> = users
            .iter()
            .copied()
            .filter(|u| self.bus.is_online(*u))
            .collect();
        if let Some(redis) = self.bus.redis() {
            match redis.online(users).await {
                Ok(cluster) => online.extend(cluster),
                Err(err) => tracing::debug!(error = %err, "cluster presence unavailable"),
            }
        }
        online
    }

    /// The user's conversations, most recent first.
    pub async fn conversations(
        &self,
        user: &Identity,
        before: Option<i64>,
        limit: usize,
    ) -> Result<ConversationPage, AppError> {
        let this = self.clone();
        let user_id = user.user_id;
        let mut page = self
            .db
            .run(move |conn| {
                let upto = this.writer.visible_up_to()?;
                let mine: HashMap<i64, i64> = conversations::memberships(conn, user_id)?
                    .into_iter()
                    .map(|m| (m.conversation_id, m.last_read_seq))
                    .collect();
                let ids: Vec<i64> = mine.keys().copied().collect();
                // Only conversations with a message are listed, the most recent first.
                let mut newest = events::newest_per_conversation(conn, &ids, upto)?;
                newest.sort_by_key(|&(_, last)| std::cmp::Reverse(last));
                if let Some(before) = before {
                    newest.retain(|(_, last)| *last < before);
                }
                let more = newest.len() > limit;
                newest.truncate(limit);
                let ids: Vec<i64> = newest.iter().map(|(c, _)| *c).collect();
                let pairs = conversations::direct_pairs(conn, &ids)?;
                let peer_of = |conversation: &i64| {
                    pairs
                        .get(conversation)
                        .map(|&(low, high)| if low == user_id { high } else { low })
                };
                let peer_ids: Vec<i64> = ids.iter().filter_map(peer_of).collect();
                let last_ids: Vec<i64> = newest.iter().map(|(_, m)| *m).collect();
                let mut last_messages: HashMap<i64, MessageView> = {
                    let rows = events::find_many(conn, &last_ids)?;
                    let views = this.views(conn, &rows)?;
                    views.into_iter().map(|v| (v.id, v)).collect()
                };
                let mut profiles: HashMap<i64, users::User> = users::find_many(conn, &peer_ids)?
                    .into_iter()
                    .map(|u| (u.id, u))
                    .collect();
                let read_by_peer: HashMap<i64, i64> = conversations::members_of(conn, &ids)?
                    .into_iter()
                    .filter(|m| m.user_id != user_id)
                    .map(|m| (m.conversation_id, m.last_read_seq))
                    .collect();
                let mut conversations = Vec::with_capacity(newest.len());
                for (conversation, last_id) in &newest {
                    let (Some(profile), Some(last_message)) = (
                        peer_of(conversation).and_then(|peer| profiles.remove(&peer)),
                        last_messages.remove(last_id),
                    ) else {
                        continue;
                    };
                    let last_read_id = mine.get(conversation).copied().unwrap_or(0);
                    conversations.push(ConversationView {
                        unread_count: events::unread_count(
                            conn,
                            *conversation,
                            user_id,
                            last_read_id,
                        )?,
                        presence: Self::presence_of(false, profile.last_seen_at),
                        peer: UserView::from(&profile),
                        last_message,
                        last_read_id,
                        peer_last_read_id: read_by_peer.get(conversation).copied().unwrap_or(0),
                    });
                }
                let next_before = if more {
                    newest.last().map(|(_, last)| *last)
                } else {
                    None
                };
                Ok(ConversationPage {
                    conversations,
                    next_before,
                })
            })
            .await?;
        let peers: Vec<i64> = page.conversations.iter().map(|c| c.peer.id).collect();
        let online = self.online(&peers).await;
        for conversation in &mut page.conversations {
            if online.contains(&conversation.peer.id) {
                conversation.presence = Self::presence_of(true, None);
            }
        }
        Ok(page)
    }

    /// Moves `user`'s read position with `peer` forward, tells the peer (a read receipt) and the
    /// user's own connections (the new unread count).
    pub async fn mark_read(
        &self,
        user: &Identity,
        peer: &str,
        up_to: i64,
    ) -> Result<ReadState, AppError> {
        if up_to < 0 {
            return Err(field("up_to", "invalid", "must be a message id"));
        }
        let (peer_id, peer_name) = self.directory.resolve(peer).await?;
        let user_id = user.user_id;
        let conversation = self
            .directory
            .direct_conversation(user_id, peer_id, false)
            .await?;
        let (position, unread, advanced) = match conversation {
            // Nothing to read yet.
            None => (0, 0, false),
            Some(conversation) => {
                self.db
                    .run(move |conn| {
                        // Never past the newest message: nobody reads the future.
                        let newest = events::newest_in(conn, conversation)?.unwrap_or(0);
                        let before = conversations::read_position(conn, conversation, user_id)?;
                        let position = conversations::advance_read(
                            conn,
                            conversation,
                            user_id,
                            up_to.min(newest),
                        )?;
                        let unread = events::unread_count(conn, conversation, user_id, position)?;
                        Ok((position, unread, position > before))
                    })
                    .await?
            }
        };
        let state = ReadState {
            peer: peer_name,
            up_to: position,
            unread,
        };
        if advanced {
            let receipt = ServerFrame::ReadReceipt {
                by: user.username.clone(),
                up_to: position,
            };
            self.bus
                .to_user(peer_id, &Outbound::Frame(receipt.to_text()), None);
        }
        let own = ServerFrame::ReadState {
            peer: state.peer.clone(),
            up_to: state.up_to,
            unread: state.unread,
        };
        self.bus
            .to_user(user_id, &Outbound::Frame(own.to_text()), None);
        Ok(state)
    }

    /// Relays "typing" to `to`. Not stored; the caller throttles.
    pub async fn typing(&self, from: &Identity, to: &str) -> Result<(), AppError> {
        let (to_id, _) = self.directory.resolve(to).await?;
        if to_id != from.user_id {
            // Only someone you have a conversation with learns that you are typing.
            let conversation = self
                .directory
                .direct_conversation(from.user_id, to_id, false)
                .await?;
            if conversation.is_none() {
                return Err(AppError::new(
                    ErrorCode::ConversationNotFound,
                    format!("you have no conversation with {to:?} yet: send a message first"),
                ));
            }
            let frame = ServerFrame::Typing {
                from: from.username.clone(),
            };
            self.bus
                .to_user(to_id, &Outbound::Frame(frame.to_text()), None);
        }
        Ok(())
    }

    /// Tells everyone who has a conversation with `user` that they came online or went offline.
    pub async fn announce_presence(
        &self,
        user: Identity,
        status: PresenceStatus,
    ) -> Result<(), AppError> {
        let user_id = user.user_id;
        let last_seen = self
            .db
            .run(move |conn| {
                let last_seen = if status == PresenceStatus::Offline {
                    let now = db::now();
                    users::set_last_seen(conn, user_id, now)?;
                    Some(now)
                } else {
                    None
                };
                // Only who to tell: everyone who shares a conversation.
                let peers = conversations::peers(conn, user_id)?;
                Ok((last_seen, peers))
            })
            .await?;
        let (last_seen, peers) = last_seen;
        let frame = ServerFrame::Presence {
            user: user.username,
            status,
            last_seen: last_seen.and_then(|t| {
                t.assume_utc()
                    .format(&time::format_description::well_known::Rfc3339)
                    .ok()
            }),
        };
        let out = Outbound::Frame(frame.to_text());
        for peer_id in peers {
            self.bus.to_user(peer_id, &out, None);
        }
        Ok(())
    }

    /// For the REST profile: presence of a user by id.
    pub async fn presence(&self, user_id: i64) -> Result<Presence, AppError> {
        let user = self
            .db
            .run(move |conn| Ok(users::find_by_id(conn, user_id)?))
            .await?
            .ok_or_else(|| AppError::new(ErrorCode::UserNotFound, "no such user"))?;
        let online = self.online(&[user_id]).await.contains(&user_id);
        Ok(Self::presence_of(online, user.last_seen_at))
    }

    /// This instance got the user's first connection: online, unless another instance has them.
    pub async fn user_connected(&self, user: Identity) -> Result<(), AppError> {
        let first = match self.bus.redis() {
            Some(redis) => redis.presence_connect(user.user_id).await.unwrap_or(true),
            None => true,
        };
        if first {
            self.announce_presence(user, PresenceStatus::Online).await?;
        }
        Ok(())
    }

    /// This instance lost the user's last connection: offline, unless another instance has them.
    pub async fn user_disconnected(&self, user: Identity) -> Result<(), AppError> {
        let last = match self.bus.redis() {
            Some(redis) => redis
                .presence_disconnect(user.user_id)
                .await
                .unwrap_or(true),
            None => true,
        };
        if last {
            self.announce_presence(user, PresenceStatus::Offline)
                .await?;
        }
        Ok(())
    }

    /// Announces that a user (by id) went offline: used when their instance died.
    pub async fn announce_offline(&self, user_id: i64) -> Result<(), AppError> {
        let user = self
            .db
            .run(move |conn| Ok(users::find_by_id(conn, user_id)?))
            .await?;
        if let Some(user) = user {
            let identity = Identity {
                user_id,
                username: user.username,
            };
            self.announce_presence(identity, PresenceStatus::Offline)
                .await?;
        }
        Ok(())
    }
}

/// Rows as clients see them, with the names of their senders and recipients, and each one's
/// recipient (the other user of its direct conversation).
fn addressed(
    directory: &Directory,
    conn: &mut DbConnection,
    rows: &[EventRow],
) -> Result<Vec<(MessageView, i64)>, AppError> {
    let mut conversation_ids: Vec<i64> = rows.iter().map(|r| r.conversation_id).collect();
    conversation_ids.sort_unstable();
    conversation_ids.dedup();
    let pairs = conversations::direct_pairs(conn, &conversation_ids)?;
    let recipient = |row: &EventRow| {
        pairs
            .get(&row.conversation_id)
            .map(|&(low, high)| if row.sender_id == low { high } else { low })
            .unwrap_or_default()
    };
    let mut ids: Vec<i64> = rows
        .iter()
        .flat_map(|r| [r.sender_id, recipient(r)])
        .collect();
    ids.sort_unstable();
    ids.dedup();
    let names = directory.names(conn, &ids)?;
    let name = |id: i64| names.get(&id).cloned().unwrap_or_default();
    Ok(rows
        .iter()
        .map(|row| {
            let to = recipient(row);
            (
                MessageView::from_row(row, name(row.sender_id), name(to)),
                to,
            )
        })
        .collect())
}

/// The message log as the database holds it: what the gap reader reads when a batch went
/// missing on its way.
struct StoredLog {
    db: Db,
    directory: Directory,
}

impl LogSource for StoredLog {
    fn newest(&mut self) -> Result<i64, AppError> {
        self.db
            .with_connection(|conn| Ok(events::newest_seq(conn)?.unwrap_or(0)))
    }

    fn read(&mut self, after: i64, upto: i64, limit: usize) -> Result<LogBatch, AppError> {
        let directory = &self.directory;
        self.db.with_connection(|conn| {
            let page = i64::try_from(limit).unwrap_or(i64::MAX);
            let rows = events::in_range(conn, after, upto, page)?;
            let last = match rows.last() {
                Some(row) if rows.len() >= limit => row.seq,
                _ => upto,
            };
            let entries = rows
                .iter()
                .zip(addressed(directory, conn, &rows)?)
                .map(|(row, (message, recipient_id))| LogEntry {
                    id: row.seq,
                    sender_id: row.sender_id,
                    recipient_id,
                    except: 0,
                    frame: ServerFrame::Message { message }.to_text(),
                })
                .collect();
            Ok(LogBatch {
                prev: after,
                last,
                entries,
            })
        })
    }
}
