//! Applies the room and call rules: serialises each frame once, delivers it, runs the grace and
//! ringing timers, rate-limits creation, and writes missed-call entries into the pair's history.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::auth::tokens::random_token;
use crate::bus::Bus;
use crate::chat::{Chat, Identity, MessageKind};
use crate::error::{AppError, ErrorCode};
use crate::ws::hub::{ConnId, Outbound};
use crate::ws::protocol::ServerFrame;

use super::rooms::{Caller, Delivery, HeldSeat, Registry, Target};
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

/// Per-user sliding one-minute windows.
#[derive(Default)]
struct Quotas {
    rooms: HashMap<i64, VecDeque<Instant>>,
    calls: HashMap<i64, VecDeque<Instant>>,
}

/// Runs `op` if `user_id` has quota left in `window`; only a success uses it up.
fn with_quota<T>(
    window: &mut HashMap<i64, VecDeque<Instant>>,
    user_id: i64,
    per_minute: usize,
    what: &str,
    op: impl FnOnce() -> Result<T, AppError>,
) -> Result<T, AppError> {
    let now = Instant::now();
    let stamps = window.entry(user_id).or_default();
    while stamps
        .front()
        .is_some_and(|t| now.duration_since(*t) > Duration::from_secs(60))
    {
        stamps.pop_front();
    }
    if stamps.len() >= per_minute {
        return Err(AppError::new(
            ErrorCode::RateLimited,
            format!("too many {what} in the last minute; wait a little"),
        ));
    }
    let result = op()?;
    stamps.push_back(now);
    Ok(result)
}

#[derive(Default)]
struct State {
    registry: Registry,
    quotas: Quotas,
}

#[derive(Clone)]
pub struct Calls {
    state: Arc<Mutex<State>>,
    bus: Bus,
    chat: Chat,
    limits: CallLimits,
}

impl Calls {
    pub fn new(bus: Bus, chat: Chat, limits: CallLimits) -> Self {
        Self {
            state: Arc::default(),
            bus,
            chat,
            limits,
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn deliver(&self, deliveries: Vec<Delivery>) {
        for delivery in deliveries {
            let out = Outbound::Frame(delivery.frame.to_text());
            for target in delivery.to {
                match target {
                    Target::Conn { user_id, conn } => self.bus.to_conn(user_id, conn, &out),
                    Target::User(user_id) => self.bus.to_user(user_id, &out, None),
                    Target::UserExcept { user_id, conn } => {
                        self.bus.to_user(user_id, &out, Some(conn));
                    }
                }
            }
        }
    }

    /// Runs a registry operation that answers the caller and tells others.
    fn answer(
        &self,
        op: impl FnOnce(&mut State) -> Result<(ServerFrame, Vec<Delivery>), AppError>,
    ) -> Result<ServerFrame, AppError> {
        let (reply, deliveries) = op(&mut self.state())?;
        self.deliver(deliveries);
        Ok(reply)
    }

    /// Runs a registry operation that only tells others; the caller gets `ok`.
    fn tell(
        &self,
        id: Option<String>,
        op: impl FnOnce(&mut State) -> Result<Vec<Delivery>, AppError>,
    ) -> Result<ServerFrame, AppError> {
        let deliveries = op(&mut self.state())?;
        self.deliver(deliveries);
        Ok(ServerFrame::Ok { id })
    }

    pub fn create_room(
        &self,
        who: &Caller,
        name: &str,
        id: Option<String>,
    ) -> Result<ServerFrame, AppError> {
        let max_peers = self.limits.max_peers;
        let per_minute = self.limits.rooms_per_minute;
        self.answer(|state| {
            let State { registry, quotas } = state;
            with_quota(
                &mut quotas.rooms,
                who.user_id,
                per_minute,
                "rooms created",
                || registry.create(who, name, max_peers, id),
            )
        })
    }

    pub fn join_room(
        &self,
        who: &Caller,
        name: &str,
        id: Option<String>,
    ) -> Result<ServerFrame, AppError> {
        self.answer(|state| state.registry.join(who, name, id))
    }

    pub fn rejoin_room(
        &self,
        who: &Caller,
        name: &str,
        peer_id: &str,
        id: Option<String>,
    ) -> Result<ServerFrame, AppError> {
        self.answer(|state| state.registry.rejoin(who, name, peer_id, id))
    }

    pub fn leave_room(&self, who: &Caller, id: Option<String>) -> Result<ServerFrame, AppError> {
        self.tell(id, |state| state.registry.leave(who))
    }

    pub fn end_room(&self, who: &Caller, id: Option<String>) -> Result<ServerFrame, AppError> {
        self.tell(id, |state| state.registry.end(who))
    }

    pub fn start_session(&self, who: &Caller, id: Option<String>) -> Result<ServerFrame, AppError> {
        self.tell(id, |state| state.registry.start_session(who))
    }

    pub fn peer_state(
        &self,
        who: &Caller,
        (muted, camera, screen): (bool, bool, bool),
        id: Option<String>,
    ) -> Result<ServerFrame, AppError> {
        self.tell(id, |state| {
            Ok(vec![state.registry.peer_state(who, muted, camera, screen)?])
        })
    }

    /// Relays a signal. Nothing is echoed on success: signaling is high-rate and fire-and-forget.
    pub fn signal(
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
        let delivery = self.state().registry.signal(who, to, kind, payload)?;
        self.deliver(vec![delivery]);
        Ok(())
    }

    pub fn room_for_member(&self, user_id: i64, name: &str) -> Result<RoomView, AppError> {
        self.state().registry.view_for_member(user_id, name)
    }

    /// Rings every connection of `to`; the call times out after the ring timeout.
    pub async fn call(
        &self,
        who: &Caller,
        to: &str,
        media: CallMedia,
        id: Option<String>,
    ) -> Result<ServerFrame, AppError> {
        let (callee_id, callee_name) = self.chat.resolve_user(to).await?;
        if callee_id == who.user_id {
            return Err(AppError::validation(vec![crate::error::FieldError {
                field: "to",
                code: "self",
                message: "cannot call yourself".into(),
            }]));
        }
        let call_id = random_token(12);
        let per_minute = self.limits.calls_per_minute;
        let reply = self.answer(|state| {
            let State { registry, quotas } = state;
            with_quota(
                &mut quotas.calls,
                who.user_id,
                per_minute,
                "calls placed",
                || registry.ring(call_id.clone(), who, callee_id, callee_name, media, id),
            )
        })?;
        let this = self.clone();
        let timeout = self.limits.ring_timeout;
        actix_web::rt::spawn(async move {
            actix_web::rt::time::sleep(timeout).await;
            let expired = this.state().registry.ring_timeout(&call_id);
            if let Some((call, deliveries)) = expired {
                this.deliver(deliveries);
                this.record_missed_call(&call_id, call).await;
            }
        });
        Ok(reply)
    }

    pub fn accept_call(&self, who: &Caller, call_id: &str) -> Result<(), AppError> {
        let deliveries = self.state().registry.accept(call_id, who)?;
        self.deliver(deliveries);
        Ok(())
    }

    pub fn decline_call(
        &self,
        who: &Caller,
        call_id: &str,
        id: Option<String>,
    ) -> Result<ServerFrame, AppError> {
        self.tell(id, |state| state.registry.decline(call_id, who))
    }

    pub async fn cancel_call(
        &self,
        who: &Caller,
        call_id: &str,
        id: Option<String>,
    ) -> Result<ServerFrame, AppError> {
        let (call, deliveries) = self.state().registry.cancel(call_id, who)?;
        self.deliver(deliveries);
        self.record_missed_call(call_id, call).await;
        Ok(ServerFrame::Ok { id })
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
        let ringing = self.state().registry.ringing_from(who.conn);
        if let Some((call_id, caller)) = ringing {
            let this = self.clone();
            actix_web::rt::spawn(async move {
                let _ = this.cancel_call(&caller, &call_id, None).await;
            });
        }
        let hold = !self.limits.grace.is_zero();
        let (deliveries, held) = self.state().registry.disconnected(who.conn, hold);
        self.deliver(deliveries);
        if let Some(held) = held {
            self.expire_later(held);
        }
    }

    fn expire_later(&self, held: HeldSeat) {
        let this = self.clone();
        let grace = self.limits.grace;
        actix_web::rt::spawn(async move {
            actix_web::rt::time::sleep(grace).await;
            let deliveries = this.state().registry.expire(&held);
            this.deliver(deliveries);
        });
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
}
