use std::collections::{HashMap, HashSet};

use tokio::sync::oneshot;

use crate::bus::Bus;
use crate::bus::ConnId;
use crate::bus::delivery::{LogChannel, LogSource};
use crate::bus::log::{LogBatch, LogEntry};
use crate::db::events::{self, EventRow, NewEvent};
use crate::db::{self, Db, DbConnection, conversations, users};
use crate::error::{AppError, ErrorCode, FieldError};

use super::typing::TypingGate;
use super::writer::{PendingMessage, Stored};
use super::{
    Directory, MAX_BODY_CHARS, MAX_CLIENT_MSG_ID_LEN, MessageKind, MessageView, MessageWriter,
    Notice, Presence, PresenceStatus,
};

/// Where a message goes.
#[derive(Debug, Clone, Copy)]
pub enum Target<'a> {
    /// The direct conversation with this user, opened if it is the first message.
    User(&'a str),
    Conversation(i64),
}

/// What a non-member is told about a conversation: nothing, not even that it exists.
pub(super) fn not_yours() -> AppError {
    AppError::new(
        ErrorCode::ConversationNotFound,
        "no such conversation of yours",
    )
}

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
    /// Most members of a group.
    pub group_max_members: usize,
}

/// What a resuming connection is sent before live traffic.
pub enum Replay {
    Pages(Vec<Vec<MessageView>>),
    TooLarge { newest_id: i64 },
}

#[derive(Clone)]
pub struct Chat {
    pub(super) db: Db,
    pub(super) bus: Bus,
    pub(super) writer: MessageWriter,
    pub(super) directory: Directory,
    pub(super) limits: ChatLimits,
    pub(super) typing: TypingGate,
}

pub(super) fn field(
    field: &'static str,
    code: &'static str,
    message: impl Into<String>,
) -> AppError {
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
        let writer = MessageWriter::start(
            db.clone(),
            directory.clone(),
            sink,
            cluster,
            log_start,
            limits.message_writers,
            limits.group_max_members,
        );
        Self {
            directory,
            db,
            bus,
            writer,
            limits,
            typing: TypingGate::default(),
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
        self.store(PendingMessage {
            row: NewEvent::new(
                conversation,
                from.user_id,
                kind.as_str(),
                body,
                key,
                db::now(),
            ),
            peer: Some(to.user_id),
            change: None,
            origin: None,
            reply: None,
        })
        .await
    }

    /// The direct conversation of two users, opened by `a` if they have none yet.
    pub(super) async fn open_direct(&self, a: i64, b: i64) -> Result<i64, AppError> {
        self.directory
            .direct_conversation(a, b, true)
            .await?
            .ok_or_else(|| AppError::internal("an opened conversation was not found"))
    }

    /// Stores a message and returns it once committed. The same `client_msg_id` again returns
    /// the original and stores nothing.
    pub async fn send(
        &self,
        sender: &Identity,
        origin: Option<ConnId>,
        target: Target<'_>,
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
        let (conversation, peer) = match target {
            Target::User(to) => {
                let (recipient_id, _) = self.directory.resolve(to).await?;
                if recipient_id == sender.user_id {
                    return Err(field("to", "self", "cannot send a message to yourself"));
                }
                let conversation = self.open_direct(sender.user_id, recipient_id).await?;
                (conversation, Some(recipient_id))
            }
            // Whether the sender is a member is checked by the writer, in the INSERT's own
            // transaction: a member removed a moment ago cannot slip one in.
            Target::Conversation(id) => match self.directory.kind_of(id).await? {
                Some(kind) => (id, kind.peer_of(sender.user_id)),
                None => return Err(not_yours()),
            },
        };
        self.store(PendingMessage {
            row: NewEvent::new(
                conversation,
                sender.user_id,
                MessageKind::Text.as_str(),
                body.to_string(),
                client_msg_id.to_string(),
                db::now(),
            ),
            peer,
            change: None,
            origin,
            reply: None,
        })
        .await
    }

    /// Hands an event to the writer and waits for its answer.
    pub(super) async fn store(&self, mut pending: PendingMessage) -> Result<Stored, AppError> {
        let (reply, stored) = oneshot::channel();
        pending.reply = Some(reply);
        self.writer.store(pending).await?;
        stored
            .await
            .map_err(|_| AppError::internal("message writer dropped a reply"))?
    }

    pub(super) fn views(
        &self,
        conn: &mut DbConnection,
        rows: &[EventRow],
    ) -> Result<Vec<MessageView>, AppError> {
        views(&self.directory, conn, rows)
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

    /// Presence from whether the user is online and when they were last seen.
    pub(super) fn presence_of(
        online: bool,
        last_seen: Option<time::PrimitiveDateTime>,
    ) -> Presence {
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
        let notice = Notice::Presence {
            user: user.username,
            status,
            last_seen: last_seen.and_then(|t| {
                t.assume_utc()
                    .format(&time::format_description::well_known::Rfc3339)
                    .ok()
            }),
        };
        self.bus.notify(peers, &notice);
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

/// Rows as clients see them, with the names of senders, direct peers and a change's users.
fn views(
    directory: &Directory,
    conn: &mut DbConnection,
    rows: &[EventRow],
) -> Result<Vec<MessageView>, AppError> {
    let mut conversation_ids: Vec<i64> = rows.iter().map(|r| r.conversation_id).collect();
    conversation_ids.sort_unstable();
    conversation_ids.dedup();
    let pairs = conversations::direct_pairs(conn, &conversation_ids)?;
    let peer = |row: &EventRow| {
        pairs
            .get(&row.conversation_id)
            .map(|&(low, high)| if row.sender_id == low { high } else { low })
    };
    let mut ids: Vec<i64> = rows
        .iter()
        .flat_map(|r| {
            let mut ids = MessageView::subject_ids(r);
            ids.push(r.sender_id);
            ids.extend(peer(r));
            ids
        })
        .collect();
    ids.sort_unstable();
    ids.dedup();
    let names = directory.names(conn, &ids)?;
    let name = |id: i64| names.get(&id).cloned().unwrap_or_default();
    Ok(rows
        .iter()
        .map(|row| MessageView::from_row(row, peer(row), name))
        .collect())
}

/// Each row's recipients: the members (then) of its conversation who see it.
fn recipients(conn: &mut DbConnection, rows: &[EventRow]) -> Result<Vec<Vec<i64>>, AppError> {
    let mut conversation_ids: Vec<i64> = rows.iter().map(|r| r.conversation_id).collect();
    conversation_ids.sort_unstable();
    conversation_ids.dedup();
    let mut members: HashMap<i64, Vec<conversations::MemberRow>> = HashMap::new();
    for member in conversations::all_members(conn, &conversation_ids)? {
        members
            .entry(member.conversation_id)
            .or_default()
            .push(member);
    }
    Ok(rows
        .iter()
        .map(|row| {
            members
                .get(&row.conversation_id)
                .map(|all| {
                    all.iter()
                        .filter(|m| m.sees(row.seq))
                        .map(|m| m.user_id)
                        .collect()
                })
                .unwrap_or_default()
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
            let mut entries = Vec::with_capacity(rows.len());
            for ((row, message), recipients) in rows
                .iter()
                .zip(views(directory, conn, &rows)?)
                .zip(recipients(conn, &rows)?)
            {
                LogEntry::append_event(&mut entries, message, row.sender_id, recipients.into(), 0);
            }
            Ok(LogBatch {
                prev: after,
                last,
                entries,
            })
        })
    }
}
