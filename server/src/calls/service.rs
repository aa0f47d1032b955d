//! Applies the room and call rules: serialises each frame once, delivers it, runs the grace and
//! ringing timers, rate-limits creation, and writes missed-call entries into the pair's history.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::CallEvent;
use crate::auth::tokens::random_token;
use crate::bus::Bus;
use crate::bus::ConnId;
use crate::chat::{ActiveCall, CallAudience, CallSummary, Chat, Identity, MessageKind, Target};
use crate::error::{AppError, ErrorCode};

use super::rooms::{Caller, Delivery, EndedCall, Entry, HeldSeat, NewGroupCall, Registry};
use super::{CallMedia, RoomView, SignalKind};

#[derive(Debug, Clone, Copy)]
pub struct CallLimits {
    /// Members of a mesh room at most.
    pub max_peers: u32,
    /// How long a dropped connection's seat is kept.
    pub grace: Duration,
    /// How long a direct call rings.
    pub ring_timeout: Duration,
    /// Rooms one user may create per minute.
    pub rooms_per_minute: usize,
    /// Direct calls one user may place per minute.
    pub calls_per_minute: usize,
}

/// Per-user sliding one-minute windows (per instance).
#[derive(Default)]
struct Quotas {
    rooms: HashMap<i64, VecDeque<Instant>>,
    calls: HashMap<i64, VecDeque<Instant>>,
}

/// Whether `user_id` may do one more thing counted in `window`.
fn quota_left(
    window: &mut HashMap<i64, VecDeque<Instant>>,
    user_id: i64,
    per_minute: usize,
) -> bool {
    let now = Instant::now();
    let stamps = window.entry(user_id).or_default();
    while stamps
        .front()
        .is_some_and(|t| now.duration_since(*t) > Duration::from_secs(60))
    {
        stamps.pop_front();
    }
    stamps.len() < per_minute
}

fn rate_limited(what: &str) -> AppError {
    AppError::new(
        ErrorCode::RateLimited,
        format!("too many {what} in the last minute; wait a little"),
    )
}

/// Where the registry of rooms and calls lives in Redis when instances share it.
const REGISTRY_KEY: &str = "pychat:calls";

fn unavailable(err: &redis::RedisError) -> AppError {
    tracing::warn!(error = %err, "shared call state unavailable");
    AppError::new(
        ErrorCode::ServiceUnavailable,
        "calls are unavailable for a moment (the cluster's shared state cannot be reached)",
    )
}

#[derive(Clone)]
pub struct Calls {
    /// The registry when this instance is alone (no Redis).
    local: Arc<Mutex<Registry>>,
    quotas: Arc<Mutex<Quotas>>,
    bus: Bus,
    chat: Chat,
    limits: CallLimits,
}

impl Calls {
    pub fn new(bus: Bus, chat: Chat, limits: CallLimits) -> Self {
        Self {
            local: Arc::default(),
            quotas: Arc::default(),
            bus,
            chat,
            limits,
        }
    }

    fn quotas(&self) -> MutexGuard<'_, Quotas> {
        self.quotas.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `change` on the registry: in memory, or in Redis under the cluster-wide lock. The
    /// group calls it ended are recorded in their groups' histories.
    async fn with_registry<T>(
        &self,
        change: impl FnOnce(&mut Registry) -> T,
    ) -> Result<T, AppError> {
        let change = |registry: &mut Registry| (change(registry), registry.take_ended());
        let (out, ended) = match self.bus.redis() {
            None => change(&mut self.local.lock().unwrap_or_else(|e| e.into_inner())),
            Some(redis) => redis
                .update_json(REGISTRY_KEY, change)
                .await
                .map_err(|err| unavailable(&err))?,
        };
        for EndedCall(call) in ended {
            let duration_ms = unix_ms().saturating_sub(call.started_at_ms).max(0);
            let summary = CallSummary {
                call_id: call.call_id,
                media: call.media,
                duration_secs: Some(u64::try_from(duration_ms / 1000).unwrap_or(0)),
            };
            self.record_call_event(
                call.conversation_id,
                call.starter_id,
                call.starter_name,
                MessageKind::CallEnded,
                summary,
            );
        }
        Ok(out)
    }

    /// Stores a group call's start or end off the caller's path (a failure is logged: the call
    /// itself is not affected).
    fn record_call_event(
        &self,
        conversation_id: i64,
        starter_id: i64,
        starter_name: String,
        kind: MessageKind,
        summary: CallSummary,
    ) {
        let chat = self.chat.clone();
        tokio::task::spawn_local(async move {
            let starter = Identity {
                user_id: starter_id,
                username: starter_name,
            };
            if let Err(err) = chat
                .store_call_event(conversation_id, &starter, kind, &summary)
                .await
            {
                tracing::warn!(error = %err, conversation_id, "could not record a group call");
            }
        });
    }

    /// Reads the registry without changing it (signal routing, room views).
    async fn read_registry<T>(&self, read: impl FnOnce(&Registry) -> T) -> Result<T, AppError> {
        match self.bus.redis() {
            None => Ok(read(&self.local.lock().unwrap_or_else(|e| e.into_inner()))),
            Some(redis) => redis
                .read_json::<Registry>(REGISTRY_KEY)
                .await
                .map(|registry| read(&registry))
                .map_err(|err| unavailable(&err)),
        }
    }

    fn deliver(&self, deliveries: Vec<Delivery>) {
        for delivery in deliveries {
            self.bus.send_call(delivery.event, &delivery.to);
        }
    }

    /// Runs a registry operation that answers the caller (to request `id`) and tells others.
    async fn answer(
        &self,
        op: impl FnOnce(&mut Registry) -> Result<(CallEvent, Vec<Delivery>), AppError>,
    ) -> Result<Option<CallEvent>, AppError> {
        let (reply, deliveries) = self.with_registry(op).await??;
        self.deliver(deliveries);
        Ok(Some(reply))
    }

    /// Runs a registry operation that only tells others; the caller gets `ok`.
    async fn tell(
        &self,
        op: impl FnOnce(&mut Registry) -> Result<Vec<Delivery>, AppError>,
    ) -> Result<Option<CallEvent>, AppError> {
        let deliveries = self.with_registry(op).await??;
        self.deliver(deliveries);
        Ok(None)
    }

    pub async fn create_room(
        &self,
        who: &Caller,
        name: &str,
    ) -> Result<Option<CallEvent>, AppError> {
        let per_minute = self.limits.rooms_per_minute;
        if !quota_left(&mut self.quotas().rooms, who.user_id, per_minute) {
            return Err(rate_limited("rooms created"));
        }
        let max_peers = self.limits.max_peers;
        let reply = self
            .answer(|registry| registry.create(who, name, max_peers))
            .await?;
        self.quotas()
            .rooms
            .entry(who.user_id)
            .or_default()
            .push_back(Instant::now());
        Ok(reply)
    }

    pub async fn join_room(&self, who: &Caller, name: &str) -> Result<Option<CallEvent>, AppError> {
        self.answer(|registry| registry.join(who, name)).await
    }

    pub async fn rejoin_room(
        &self,
        who: &Caller,
        name: &str,
        peer_id: &str,
    ) -> Result<Option<CallEvent>, AppError> {
        self.answer(|registry| registry.rejoin(who, name, peer_id))
            .await
    }

    pub async fn leave_room(&self, who: &Caller) -> Result<Option<CallEvent>, AppError> {
        self.tell(|registry| registry.leave(who)).await
    }

    pub async fn end_room(&self, who: &Caller) -> Result<Option<CallEvent>, AppError> {
        self.tell(|registry| registry.end(who)).await
    }

    pub async fn start_session(&self, who: &Caller) -> Result<Option<CallEvent>, AppError> {
        self.tell(|registry| registry.start_session(who)).await
    }

    pub async fn peer_state(
        &self,
        who: &Caller,
        (muted, camera, screen): (bool, bool, bool),
    ) -> Result<Option<CallEvent>, AppError> {
        self.tell(|registry| Ok(vec![registry.peer_state(who, muted, camera, screen)?]))
            .await
    }

    /// Relays a signal. Nothing is echoed on success: signaling is high-rate and fire-and-forget.
    pub async fn signal(
        &self,
        who: &Caller,
        to: &str,
        kind: SignalKind,
        payload: serde_json::Value,
    ) -> Result<(), AppError> {
        let size = serde_json::to_string(&payload).map_or(usize::MAX, |p| p.len());
        if size > kind.max_payload_bytes() {
            return Err(AppError::new(
                ErrorCode::PayloadTooLarge,
                format!(
                    "a {kind:?} payload may be at most {} bytes",
                    kind.max_payload_bytes()
                ),
            ));
        }
        let delivery = self
            .read_registry(|registry| registry.signal(who, to, kind, payload))
            .await??;
        self.deliver(vec![delivery]);
        Ok(())
    }

    pub async fn room_for_member(&self, user_id: i64, name: &str) -> Result<RoomView, AppError> {
        self.read_registry(|registry| registry.view_for_member(user_id, name))
            .await?
    }

    /// Rings every connection of a user, or calls a conversation (see [`Calls::call_conversation`]).
    pub async fn call(
        &self,
        who: &Caller,
        target: Target<'_>,
        media: CallMedia,
    ) -> Result<Option<CallEvent>, AppError> {
        match target {
            Target::User(to) => {
                let (callee_id, callee_name) = self.chat.resolve_user(to).await?;
                self.ring(who, callee_id, callee_name, media).await
            }
            Target::Conversation(conversation_id) => {
                self.call_conversation(who, conversation_id, media).await
            }
        }
    }

    /// A direct conversation: rings its other user. A group: joins its call if one is going
    /// on, or starts one that rings every other member for the ring timeout and is recorded
    /// in the group's history (`call_started`, and `call_ended` when its last member leaves).
    pub async fn call_conversation(
        &self,
        who: &Caller,
        conversation_id: i64,
        media: CallMedia,
    ) -> Result<Option<CallEvent>, AppError> {
        let members = match self
            .chat
            .call_audience(&who.identity(), conversation_id)
            .await?
        {
            CallAudience::Direct { peer_id, peer_name } => {
                return self.ring(who, peer_id, peer_name, media).await;
            }
            CallAudience::Group { members } => members,
        };
        let per_minute = self.limits.calls_per_minute;
        if !quota_left(&mut self.quotas().calls, who.user_id, per_minute) {
            return Err(rate_limited("calls placed"));
        }
        let call_id = random_token(12);
        let new_call = call_id.clone();
        let max_peers = self.limits.max_peers;
        let started_at_ms = unix_ms();
        let (reply, deliveries, entry) = self
            .with_registry(|registry| {
                let call = NewGroupCall {
                    call_id: new_call,
                    conversation_id,
                    members: &members,
                    media,
                    max_peers,
                    now_ms: started_at_ms,
                };
                registry.call_conversation(who, call)
            })
            .await??;
        let reply = Some(reply);
        self.deliver(deliveries);
        if entry == Entry::Started {
            self.quotas()
                .calls
                .entry(who.user_id)
                .or_default()
                .push_back(Instant::now());
            let summary = CallSummary {
                call_id: call_id.clone(),
                media,
                duration_secs: None,
            };
            self.record_call_event(
                conversation_id,
                who.user_id,
                who.username.clone(),
                MessageKind::CallStarted,
                summary,
            );
            let this = self.clone();
            let timeout = self.limits.ring_timeout;
            tokio::task::spawn_local(async move {
                tokio::time::sleep(timeout).await;
                if let Ok(deliveries) = this
                    .with_registry(|registry| registry.conversation_ring_timeout(&call_id))
                    .await
                {
                    this.deliver(deliveries);
                }
            });
        }
        Ok(reply)
    }

    /// `user_id` left the group or was removed from it (by `by`): out of its call at once.
    pub async fn conversation_member_gone(&self, conversation_id: i64, user_id: i64, by: &str) {
        match self
            .with_registry(|registry| registry.member_gone(conversation_id, user_id, by))
            .await
        {
            Ok(deliveries) => self.deliver(deliveries),
            Err(err) => {
                tracing::warn!(error = %err, conversation_id, "could not end a removed member's call")
            }
        }
    }

    /// The calls going on in groups, by conversation (empty while shared state is unreachable:
    /// a conversation view then simply shows none).
    pub async fn active_calls(&self) -> HashMap<i64, ActiveCall> {
        self.read_registry(|registry| registry.active_calls().into_iter().collect())
            .await
            .unwrap_or_default()
    }

    /// Rings every connection of a user; the call times out after the ring timeout.
    async fn ring(
        &self,
        who: &Caller,
        callee_id: i64,
        callee_name: String,
        media: CallMedia,
    ) -> Result<Option<CallEvent>, AppError> {
        if callee_id == who.user_id {
            return Err(AppError::validation(vec![crate::error::FieldError {
                field: "to",
                code: "self",
                message: "cannot call yourself".into(),
            }]));
        }
        let per_minute = self.limits.calls_per_minute;
        if !quota_left(&mut self.quotas().calls, who.user_id, per_minute) {
            return Err(rate_limited("calls placed"));
        }
        let call_id = random_token(12);
        let ring_id = call_id.clone();
        let reply = self
            .answer(|registry| registry.ring(ring_id, who, callee_id, callee_name, media))
            .await?;
        self.quotas()
            .calls
            .entry(who.user_id)
            .or_default()
            .push_back(Instant::now());
        let this = self.clone();
        let timeout = self.limits.ring_timeout;
        tokio::task::spawn_local(async move {
            tokio::time::sleep(timeout).await;
            let expired = this
                .with_registry(|registry| registry.ring_timeout(&call_id))
                .await;
            if let Ok(Some((call, deliveries))) = expired {
                this.deliver(deliveries);
                this.record_missed_call(&call_id, call).await;
            }
        });
        Ok(reply)
    }

    pub async fn accept_call(&self, who: &Caller, call_id: &str) -> Result<(), AppError> {
        self.check_still_member(who, call_id).await?;
        let deliveries = self
            .with_registry(|registry| registry.accept(call_id, who))
            .await??;
        self.deliver(deliveries);
        Ok(())
    }

    /// A group call is answered only by someone who is a member of the group now.
    async fn check_still_member(&self, who: &Caller, call_id: &str) -> Result<(), AppError> {
        let group = self
            .read_registry(|registry| registry.conversation_of_call(call_id))
            .await?;
        if let Some(conversation_id) = group {
            self.chat
                .call_audience(&who.identity(), conversation_id)
                .await
                .map_err(|_| {
                    AppError::new(ErrorCode::CallNotFound, "no such ringing call for you")
                })?;
        }
        Ok(())
    }

    pub async fn decline_call(
        &self,
        who: &Caller,
        call_id: &str,
    ) -> Result<Option<CallEvent>, AppError> {
        self.tell(|registry| registry.decline(call_id, who)).await
    }

    pub async fn cancel_call(
        &self,
        who: &Caller,
        call_id: &str,
    ) -> Result<Option<CallEvent>, AppError> {
        let (call, deliveries) = self
            .with_registry(|registry| registry.cancel(call_id, who))
            .await??;
        self.deliver(deliveries);
        self.record_missed_call(call_id, call).await;
        Ok(None)
    }

    async fn record_missed_call(&self, call_id: &str, call: super::rooms::Ringing) {
        let media = match call.media {
            CallMedia::Audio => "voice",
            CallMedia::Video => "video",
        };
        let from = Identity {
            user_id: call.caller.user_id,
            username: call.caller.username,
        };
        let to = Identity {
            user_id: call.callee_id,
            username: call.callee_name,
        };
        let stored = self
            .chat
            .store_system_message(
                &from,
                &to,
                MessageKind::MissedCall,
                format!("Missed {media} call"),
                format!("call-{call_id}"),
            )
            .await;
        if let Err(err) = stored {
            tracing::warn!(error = %err, "could not store a missed call");
        }
    }

    /// A connection closed: its ringing call is cancelled, its seat held for the grace period.
    pub fn connection_closed(&self, who: &Caller) {
        let this = self.clone();
        let who = who.clone();
        tokio::task::spawn_local(async move {
            let ringing = this
                .read_registry(|registry| registry.ringing_from(who.conn))
                .await;
            if let Ok(Some((call_id, caller))) = ringing {
                let _ = this.cancel_call(&caller, &call_id).await;
            }
            let hold = !this.limits.grace.is_zero();
            let closed = this
                .with_registry(|registry| registry.disconnected(who.conn, hold))
                .await;
            if let Ok((deliveries, held)) = closed {
                this.deliver(deliveries);
                if let Some(held) = held {
                    this.expire_later(held);
                }
            }
        });
    }

    fn expire_later(&self, held: HeldSeat) {
        let this = self.clone();
        let grace = self.limits.grace;
        tokio::task::spawn_local(async move {
            tokio::time::sleep(grace).await;
            if let Ok(deliveries) = this.with_registry(|registry| registry.expire(&held)).await {
                this.deliver(deliveries);
            }
        });
    }

    /// Another instance died: its members leave their rooms and its calls stop ringing.
    pub async fn instance_died(&self, instance: u32) {
        let dropped = self
            .with_registry(|registry| registry.drop_instance(instance))
            .await;
        if let Ok((deliveries, cancelled)) = dropped {
            self.deliver(deliveries);
            for (call_id, call) in cancelled {
                self.record_missed_call(&call_id, call).await;
            }
        }
    }
}

impl Caller {
    pub fn new(identity: &Identity, conn: ConnId) -> Self {
        Self {
            user_id: identity.user_id,
            username: identity.username.clone(),
            conn,
        }
    }

    fn identity(&self) -> Identity {
        Identity {
            user_id: self.user_id,
            username: self.username.clone(),
        }
    }
}

fn unix_ms() -> i64 {
    let now = time::OffsetDateTime::now_utc();
    i64::try_from(now.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}
