//! Room and ringing-call state, as a state machine without I/O: each operation checks the rules
//! and returns what to tell whom ([`Delivery`]). Membership is per connection; a member's peer id
//! stays the same when it takes its seat back on a new connection.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::bus::{Address, ConnId};
use crate::error::{AppError, ErrorCode, FieldError};

use super::{CallEndReason, CallEvent, CallMedia, LeaveReason, MemberView, RoomView, SignalKind};

mod conversation_calls;

pub use conversation_calls::{ConversationCall, EndedCall, Entry, NewGroupCall};

pub const ROOM_NAME_MAX: usize = 64;
/// Direct calls get a private room under this reserved prefix.
const DIRECT_PREFIX: &str = "_call-";

/// A connection of a user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Caller {
    pub user_id: i64,
    pub username: String,
    pub conn: ConnId,
}

#[derive(Debug, Clone)]
pub struct Delivery {
    pub to: Vec<Address>,
    pub event: CallEvent,
}

#[derive(Debug, Serialize, Deserialize)]
struct Member {
    peer_id: String,
    user_id: i64,
    username: String,
    /// `None` while disconnected (seat held for the grace period).
    conn: Option<ConnId>,
    /// Bumped on each disconnect and rejoin, so a stale grace timer does nothing.
    epoch: u64,
    /// The instance of its current (or last) connection: if that instance dies, so does the seat.
    instance: u32,
    muted: bool,
    camera: bool,
    screen: bool,
}

impl Member {
    fn view(&self) -> MemberView {
        MemberView {
            peer_id: self.peer_id.clone(),
            username: self.username.clone(),
            muted: self.muted,
            camera: self.camera,
            screen: self.screen,
            connected: self.conn.is_some(),
        }
    }

    fn target(&self) -> Option<Address> {
        self.conn.map(|conn| Address::Conn {
            user_id: self.user_id,
            conn,
        })
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Room {
    name: String,
    creator: String,
    session_started: bool,
    direct: bool,
    max_peers: u32,
    members: Vec<Member>,
    /// Set when this is a group's call.
    #[serde(default)]
    conversation: Option<ConversationCall>,
}

impl Room {
    fn view(&self) -> RoomView {
        RoomView {
            name: self.name.clone(),
            creator: self.creator.clone(),
            creator_username: self
                .members
                .iter()
                .find(|m| m.peer_id == self.creator)
                .map(|m| m.username.clone())
                .unwrap_or_default(),
            session_started: self.session_started,
            direct: self.direct,
            conversation_id: self.conversation.as_ref().map(|c| c.conversation_id),
            call_id: self.conversation.as_ref().map(|c| c.call_id.clone()),
            max_peers: self.max_peers,
            members: self.members.iter().map(Member::view).collect(),
        }
    }

    fn targets_except(&self, peer_id: &str) -> Vec<Address> {
        self.members
            .iter()
            .filter(|m| m.peer_id != peer_id)
            .filter_map(Member::target)
            .collect()
    }

    fn member_by_conn(&self, conn: ConnId) -> Option<&Member> {
        self.members.iter().find(|m| m.conn == Some(conn))
    }
}

/// A call that is ringing.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Ringing {
    pub caller: Caller,
    pub callee_id: i64,
    pub callee_name: String,
    pub media: CallMedia,
}

/// A seat whose connection dropped: the timer to fire after the grace period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldSeat {
    pub room_key: String,
    pub peer_id: String,
    pub epoch: u64,
}

/// The whole state. With several instances it is kept in Redis and changed under a lock (see
/// `calls::service`); alone, it lives in memory.
#[derive(Default, Serialize, Deserialize)]
pub struct Registry {
    rooms: HashMap<String, Room>,
    /// Which room each connection is in.
    by_conn: HashMap<ConnId, String>,
    ringing: HashMap<String, Ringing>,
    next_peer: u64,
    /// Group calls that ended in the last operation, taken by the service to record them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    ended: Vec<EndedCall>,
}

/// Connection ids carry their instance in the high half (see `ws::hub`).
fn instance_of(conn: ConnId) -> u32 {
    u32::try_from(conn >> 32).unwrap_or(0)
}

fn error(code: ErrorCode, message: &str) -> AppError {
    AppError::new(code, message)
}

/// Trims and checks a room name: 1–64 letters, digits, spaces, `_ . -`, not starting with `_`.
/// Returns the display name and the case-insensitive key.
pub fn room_name(raw: &str) -> Result<(String, String), AppError> {
    use unicode_normalization::UnicodeNormalization;
    // NFC: "é" typed as one code point or as two names one room.
    let name: String = raw.trim().nfc().collect();
    let name = name.as_str();
    let invalid = |message: &str| {
        AppError::validation(vec![FieldError {
            field: "name",
            code: "invalid",
            message: message.into(),
        }])
    };
    if name.is_empty() || name.chars().count() > ROOM_NAME_MAX {
        return Err(invalid("must be 1–64 characters"));
    }
    if name.starts_with('_') {
        return Err(error(
            ErrorCode::RoomNameReserved,
            "room names starting with '_' are reserved",
        ));
    }
    if !name
        .chars()
        .all(|c| c.is_alphanumeric() || matches!(c, ' ' | '_' | '.' | '-'))
    {
        return Err(invalid(
            "may contain only letters, digits, spaces, '_', '.' and '-'",
        ));
    }
    // The blank letters (Hangul fillers) are letters to `is_alphanumeric`, yet show nothing.
    if crate::input::shown_name(name).is_err() {
        return Err(invalid("must hold something visible"));
    }
    Ok((name.to_string(), name.to_lowercase()))
}

impl Registry {
    fn new_peer_id(&mut self) -> String {
        self.next_peer += 1;
        format!("p{}", self.next_peer)
    }

    fn new_member(&mut self, who: &Caller) -> Member {
        Member {
            peer_id: self.new_peer_id(),
            user_id: who.user_id,
            username: who.username.clone(),
            conn: Some(who.conn),
            epoch: 0,
            instance: instance_of(who.conn),
            muted: false,
            camera: true,
            screen: false,
        }
    }

    fn ensure_free(&self, conn: ConnId) -> Result<(), AppError> {
        if self.by_conn.contains_key(&conn) {
            return Err(error(
                ErrorCode::AlreadyInRoom,
                "this connection is in a room already; leave it first",
            ));
        }
        Ok(())
    }

    /// Whether the user holds a seat anywhere or has a call ringing.
    pub fn is_busy(&self, user_id: i64) -> bool {
        self.rooms
            .values()
            .any(|r| r.members.iter().any(|m| m.user_id == user_id))
            || self
                .ringing
                .values()
                .any(|c| c.callee_id == user_id || c.caller.user_id == user_id)
    }

    fn room_of(&self, conn: ConnId) -> Result<(&String, &Room), AppError> {
        self.by_conn
            .get(&conn)
            .and_then(|key| self.rooms.get_key_value(key))
            .ok_or_else(|| error(ErrorCode::NotInRoom, "this connection is in no room"))
    }

    pub fn create(
        &mut self,
        who: &Caller,
        raw_name: &str,
        max_peers: u32,
    ) -> Result<(CallEvent, Vec<Delivery>), AppError> {
        let (name, key) = room_name(raw_name)?;
        self.ensure_free(who.conn)?;
        if self.rooms.contains_key(&key) {
            return Err(error(
                ErrorCode::RoomExists,
                "a room with this name is open",
            ));
        }
        let member = self.new_member(who);
        let peer_id = member.peer_id.clone();
        let room = Room {
            name,
            creator: peer_id.clone(),
            session_started: false,
            direct: false,
            max_peers,
            members: vec![member],
            conversation: None,
        };
        let view = room.view();
        self.rooms.insert(key.clone(), room);
        self.by_conn.insert(who.conn, key);
        Ok((
            CallEvent::RoomCreated {
                room: view,
                peer_id,
            },
            Vec::new(),
        ))
    }

    pub fn join(
        &mut self,
        who: &Caller,
        raw_name: &str,
    ) -> Result<(CallEvent, Vec<Delivery>), AppError> {
        let key = raw_name.trim().to_lowercase();
        self.ensure_free(who.conn)?;
        let not_found = || error(ErrorCode::RoomNotFound, "no open room has this name");
        let full = match self.rooms.get(&key) {
            None => return Err(not_found()),
            Some(room) if room.direct || room.conversation.is_some() => return Err(not_found()),
            Some(room) => room.members.len() >= room.max_peers as usize,
        };
        if full {
            return Err(error(ErrorCode::RoomFull, "the room is full"));
        }
        let member = self.new_member(who);
        let member_view = member.view();
        let peer_id = member.peer_id.clone();
        let room = self.rooms.get_mut(&key).ok_or_else(not_found)?;
        room.members.push(member);
        let announce = Delivery {
            to: room.targets_except(&peer_id),
            event: CallEvent::MemberJoined {
                room: room.name.clone(),
                member: member_view,
            },
        };
        let view = room.view();
        self.by_conn.insert(who.conn, key);
        Ok((
            CallEvent::RoomJoined {
                room: view,
                peer_id,
            },
            vec![announce],
        ))
    }

    /// Takes back a seat held for `who`'s user (after a reconnect).
    pub fn rejoin(
        &mut self,
        who: &Caller,
        raw_name: &str,
        peer_id: &str,
    ) -> Result<(CallEvent, Vec<Delivery>), AppError> {
        let key = raw_name.trim().to_lowercase();
        self.ensure_free(who.conn)?;
        let room = self
            .rooms
            .get_mut(&key)
            .ok_or_else(|| error(ErrorCode::RoomNotFound, "no open room has this name"))?;
        let member = room
            .members
            .iter_mut()
            .find(|m| m.peer_id == peer_id && m.user_id == who.user_id)
            .ok_or_else(|| {
                error(
                    ErrorCode::PeerNotFound,
                    "no seat of yours with that peer id",
                )
            })?;
        // A seat still tied to an old connection (not yet noticed dead) moves to the new one.
        let old_conn = member.conn.replace(who.conn);
        member.epoch += 1;
        member.instance = instance_of(who.conn);
        let announce = Delivery {
            to: room.targets_except(peer_id),
            event: CallEvent::MemberReconnected {
                room: room.name.clone(),
                peer_id: peer_id.to_string(),
            },
        };
        let view = room.view();
        if let Some(old) = old_conn {
            self.by_conn.remove(&old);
        }
        self.by_conn.insert(who.conn, key);
        Ok((
            CallEvent::RoomJoined {
                room: view,
                peer_id: peer_id.to_string(),
            },
            vec![announce],
        ))
    }

    /// Removes a member; an emptied room closes, a direct call ends for the other side.
    fn remove_member(&mut self, key: &str, peer_id: &str, reason: LeaveReason) -> Vec<Delivery> {
        let Some(room) = self.rooms.get_mut(key) else {
            return Vec::new();
        };
        let Some(index) = room.members.iter().position(|m| m.peer_id == peer_id) else {
            return Vec::new();
        };
        let member = room.members.remove(index);
        if let Some(conn) = member.conn {
            self.by_conn.remove(&conn);
        }
        if room.members.is_empty() {
            return self
                .rooms
                .remove(key)
                .map_or_else(Vec::new, |room| self.call_over(room));
        }
        if room.direct {
            return self.close_room(key, &member.username);
        }
        if room.creator == member.peer_id {
            room.creator = room.members[0].peer_id.clone();
        }
        vec![Delivery {
            to: room.targets_except(peer_id),
            event: CallEvent::MemberLeft {
                room: room.name.clone(),
                peer_id: member.peer_id,
                username: member.username,
                reason,
                creator: room.creator.clone(),
            },
        }]
    }

    fn close_room(&mut self, key: &str, by: &str) -> Vec<Delivery> {
        let Some(room) = self.rooms.remove(key) else {
            return Vec::new();
        };
        for member in &room.members {
            if let Some(conn) = member.conn {
                self.by_conn.remove(&conn);
            }
        }
        let mut deliveries = vec![Delivery {
            to: room.members.iter().filter_map(Member::target).collect(),
            event: CallEvent::RoomEnded {
                room: room.name.clone(),
                by: by.to_string(),
            },
        }];
        deliveries.extend(self.call_over(room));
        deliveries
    }

    pub fn leave(&mut self, who: &Caller) -> Result<Vec<Delivery>, AppError> {
        let (key, room) = self.room_of(who.conn)?;
        let key = key.clone();
        let peer_id = room
            .member_by_conn(who.conn)
            .map(|m| m.peer_id.clone())
            .unwrap_or_default();
        Ok(self.remove_member(&key, &peer_id, LeaveReason::Left))
    }

    pub fn end(&mut self, who: &Caller) -> Result<Vec<Delivery>, AppError> {
        let (key, room) = self.room_of(who.conn)?;
        let is_creator = room
            .member_by_conn(who.conn)
            .is_some_and(|m| m.peer_id == room.creator);
        if !is_creator && !room.direct {
            return Err(error(
                ErrorCode::NotRoomCreator,
                "only the room's creator can end it for everyone",
            ));
        }
        let key = key.clone();
        Ok(self.close_room(&key, &who.username))
    }

    pub fn start_session(&mut self, who: &Caller) -> Result<Vec<Delivery>, AppError> {
        let key = self.room_of(who.conn)?.0.clone();
        let room = self
            .rooms
            .get_mut(&key)
            .ok_or_else(|| error(ErrorCode::NotInRoom, "this connection is in no room"))?;
        if room.member_by_conn(who.conn).map(|m| &m.peer_id) != Some(&room.creator) {
            return Err(error(
                ErrorCode::NotRoomCreator,
                "only the room's creator can start the session",
            ));
        }
        if room.members.len() < 2 {
            return Err(error(
                ErrorCode::SessionNotStarted,
                "wait until someone has joined",
            ));
        }
        room.session_started = true;
        Ok(vec![Delivery {
            to: room.members.iter().filter_map(Member::target).collect(),
            event: CallEvent::SessionStarted {
                room: room.name.clone(),
                peers: room.members.iter().map(Member::view).collect(),
            },
        }])
    }

    /// Relays signaling to one peer of the sender's own room, stamped with the sender's identity.
    pub fn signal(
        &self,
        who: &Caller,
        to: &str,
        kind: SignalKind,
        payload: serde_json::Value,
    ) -> Result<Delivery, AppError> {
        let (_, room) = self.room_of(who.conn)?;
        if !room.session_started {
            return Err(error(
                ErrorCode::SessionNotStarted,
                "the creator has not started the session",
            ));
        }
        let sender = room
            .member_by_conn(who.conn)
            .ok_or_else(|| error(ErrorCode::NotInRoom, "this connection is in no room"))?;
        let target = room
            .members
            .iter()
            .find(|m| m.peer_id == to && m.peer_id != sender.peer_id)
            .and_then(Member::target)
            .ok_or_else(|| {
                error(
                    ErrorCode::PeerNotFound,
                    "no connected peer with that id in your room",
                )
            })?;
        Ok(Delivery {
            to: vec![target],
            event: CallEvent::Signal {
                from: sender.peer_id.clone(),
                from_user: sender.username.clone(),
                kind,
                payload,
            },
        })
    }

    pub fn peer_state(
        &mut self,
        who: &Caller,
        muted: bool,
        camera: bool,
        screen: bool,
    ) -> Result<Delivery, AppError> {
        let key = self.room_of(who.conn)?.0.clone();
        let room = self
            .rooms
            .get_mut(&key)
            .ok_or_else(|| error(ErrorCode::NotInRoom, "this connection is in no room"))?;
        let member = room
            .members
            .iter_mut()
            .find(|m| m.conn == Some(who.conn))
            .ok_or_else(|| error(ErrorCode::NotInRoom, "this connection is in no room"))?;
        member.muted = muted;
        member.camera = camera;
        member.screen = screen;
        let event = CallEvent::PeerState {
            room: room.name.clone(),
            peer_id: member.peer_id.clone(),
            username: member.username.clone(),
            muted,
            camera,
            screen,
        };
        let peer_id = member.peer_id.clone();
        Ok(Delivery {
            to: room.targets_except(&peer_id),
            event,
        })
    }

    /// A connection went away. With a grace period its seat is held (the timer to set is
    /// returned); without one it leaves at once.
    pub fn disconnected(
        &mut self,
        conn: ConnId,
        hold_seat: bool,
    ) -> (Vec<Delivery>, Option<HeldSeat>) {
        let Some(key) = self.by_conn.remove(&conn) else {
            return (Vec::new(), None);
        };
        let Some(room) = self.rooms.get_mut(&key) else {
            return (Vec::new(), None);
        };
        let Some(member) = room.members.iter_mut().find(|m| m.conn == Some(conn)) else {
            return (Vec::new(), None);
        };
        let peer_id = member.peer_id.clone();
        if !hold_seat {
            member.conn = None;
            return (
                self.remove_member(&key, &peer_id, LeaveReason::Timeout),
                None,
            );
        }
        member.conn = None;
        member.epoch += 1;
        let held = HeldSeat {
            room_key: key,
            peer_id: peer_id.clone(),
            epoch: member.epoch,
        };
        let delivery = Delivery {
            to: room.targets_except(&peer_id),
            event: CallEvent::MemberDisconnected {
                room: room.name.clone(),
                peer_id,
            },
        };
        (vec![delivery], Some(held))
    }

    /// The grace period of a held seat ran out: if nobody took it back, the member is removed.
    pub fn expire(&mut self, held: &HeldSeat) -> Vec<Delivery> {
        let still_held = self
            .rooms
            .get(&held.room_key)
            .and_then(|r| r.members.iter().find(|m| m.peer_id == held.peer_id))
            .is_some_and(|m| m.conn.is_none() && m.epoch == held.epoch);
        if !still_held {
            return Vec::new();
        }
        self.remove_member(&held.room_key, &held.peer_id, LeaveReason::Timeout)
    }

    /// An instance died: its members leave their rooms (the others are told) and the calls its
    /// connections were placing stop ringing (returned, for their missed-call entries).
    pub fn drop_instance(&mut self, instance: u32) -> (Vec<Delivery>, Vec<(String, Ringing)>) {
        let seats: Vec<(String, String)> = self
            .rooms
            .iter()
            .flat_map(|(key, room)| {
                room.members
                    .iter()
                    .filter(|m| m.instance == instance)
                    .map(move |m| (key.clone(), m.peer_id.clone()))
            })
            .collect();
        let mut deliveries = Vec::new();
        for (key, peer_id) in seats {
            deliveries.extend(self.remove_member(&key, &peer_id, LeaveReason::Timeout));
        }
        // Nobody is left to time out the ringing of the calls that instance started.
        deliveries.extend(self.stop_ringing_from(instance));
        let calls: Vec<String> = self
            .ringing
            .iter()
            .filter(|(_, c)| instance_of(c.caller.conn) == instance)
            .map(|(id, _)| id.clone())
            .collect();
        let mut cancelled = Vec::new();
        for call_id in calls {
            if let Some(call) = self.ringing.remove(&call_id) {
                deliveries.extend(ended(
                    &call_id,
                    &call,
                    CallEndReason::Cancelled,
                    CallEndReason::Missed,
                ));
                cancelled.push((call_id, call));
            }
        }
        (deliveries, cancelled)
    }

    /// The public state of `name` for a user who holds a seat in it. Anyone else is told the
    /// room does not exist, whether it does or not: a different answer would let any user probe
    /// which room names are in use.
    pub fn view_for_member(&self, user_id: i64, raw_name: &str) -> Result<RoomView, AppError> {
        self.rooms
            .get(&raw_name.trim().to_lowercase())
            .filter(|room| room.members.iter().any(|m| m.user_id == user_id))
            .map(Room::view)
            .ok_or_else(|| error(ErrorCode::RoomNotFound, "no open room has this name"))
    }

    // ---- Direct calls ----

    pub fn ring(
        &mut self,
        call_id: String,
        caller: &Caller,
        callee_id: i64,
        callee_name: String,
        media: CallMedia,
    ) -> Result<(CallEvent, Vec<Delivery>), AppError> {
        self.ensure_free(caller.conn)?;
        if self.ringing.values().any(|c| c.caller.conn == caller.conn) {
            return Err(error(
                ErrorCode::AlreadyInRoom,
                "this connection is calling already",
            ));
        }
        if self.is_busy(callee_id) {
            return Err(error(ErrorCode::Busy, "the user is in a call"));
        }
        let ringing = Ringing {
            caller: caller.clone(),
            callee_id,
            callee_name: callee_name.clone(),
            media,
        };
        self.ringing.insert(call_id.clone(), ringing);
        Ok((
            CallEvent::CallRinging {
                call_id: call_id.clone(),
                to: callee_name,
                media,
            },
            vec![Delivery {
                to: vec![Address::User(callee_id)],
                event: CallEvent::IncomingCall {
                    call_id,
                    from: caller.username.clone(),
                    media,
                    conversation_id: None,
                },
            }],
        ))
    }

    fn take_call(
        &mut self,
        call_id: &str,
        allowed: impl Fn(&Ringing) -> bool,
    ) -> Result<Ringing, AppError> {
        match self.ringing.get(call_id) {
            Some(call) if allowed(call) => Ok(self
                .ringing
                .remove(call_id)
                .ok_or_else(|| error(ErrorCode::CallNotFound, "no such ringing call"))?),
            _ => Err(error(
                ErrorCode::CallNotFound,
                "no such ringing call for you",
            )),
        }
    }

    /// The callee answers on connection `who`: a private two-person room, session started.
    pub fn accept(&mut self, call_id: &str, who: &Caller) -> Result<Vec<Delivery>, AppError> {
        self.ensure_free(who.conn)?;
        if let Some(key) = self.conversation_room_of_call(call_id) {
            return self.accept_conversation_call(&key, who);
        }
        let call = self.take_call(call_id, |c| c.callee_id == who.user_id)?;
        let caller_member = self.new_member(&call.caller);
        let callee_member = self.new_member(who);
        let key = format!("{DIRECT_PREFIX}{call_id}");
        let room = Room {
            name: key.clone(),
            creator: caller_member.peer_id.clone(),
            session_started: true,
            direct: true,
            max_peers: 2,
            members: vec![caller_member, callee_member],
            conversation: None,
        };
        let view = room.view();
        let deliveries = room
            .members
            .iter()
            .filter_map(|m| {
                m.target().map(|target| Delivery {
                    to: vec![target],
                    event: CallEvent::CallAccepted {
                        call_id: call_id.to_string(),
                        room: view.clone(),
                        peer_id: m.peer_id.clone(),
                    },
                })
            })
            .chain(std::iter::once(Delivery {
                // Every other device of the callee stops ringing.
                to: vec![Address::UserExcept {
                    user_id: who.user_id,
                    conn: who.conn,
                }],
                event: CallEvent::CallEnded {
                    call_id: call_id.to_string(),
                    reason: CallEndReason::AnsweredElsewhere,
                },
            }))
            .collect();
        self.by_conn.insert(call.caller.conn, key.clone());
        self.by_conn.insert(who.conn, key.clone());
        self.rooms.insert(key, room);
        Ok(deliveries)
    }

    pub fn decline(&mut self, call_id: &str, who: &Caller) -> Result<Vec<Delivery>, AppError> {
        if let Some(key) = self.conversation_room_of_call(call_id) {
            return self.decline_conversation_call(&key, who);
        }
        let call = self.take_call(call_id, |c| c.callee_id == who.user_id)?;
        Ok(ended(
            call_id,
            &call,
            CallEndReason::Declined,
            CallEndReason::Declined,
        ))
    }

    /// The caller hangs up, or its connection drops, before an answer.
    pub fn cancel(
        &mut self,
        call_id: &str,
        who: &Caller,
    ) -> Result<(Ringing, Vec<Delivery>), AppError> {
        let call = self.take_call(call_id, |c| c.caller.conn == who.conn)?;
        let deliveries = ended(
            call_id,
            &call,
            CallEndReason::Cancelled,
            CallEndReason::Cancelled,
        );
        Ok((call, deliveries))
    }

    /// The call of `conn` that is still ringing, if any.
    pub fn ringing_from(&self, conn: ConnId) -> Option<(String, Caller)> {
        self.ringing
            .iter()
            .find(|(_, c)| c.caller.conn == conn)
            .map(|(id, c)| (id.clone(), c.caller.clone()))
    }

    /// Nobody answered in time.
    pub fn ring_timeout(&mut self, call_id: &str) -> Option<(Ringing, Vec<Delivery>)> {
        let call = self.ringing.remove(call_id)?;
        let deliveries = ended(
            call_id,
            &call,
            CallEndReason::Timeout,
            CallEndReason::Missed,
        );
        Some((call, deliveries))
    }
}

fn ended(
    call_id: &str,
    call: &Ringing,
    to_caller: CallEndReason,
    to_callee: CallEndReason,
) -> Vec<Delivery> {
    vec![
        Delivery {
            to: vec![Address::Conn {
                user_id: call.caller.user_id,
                conn: call.caller.conn,
            }],
            event: CallEvent::CallEnded {
                call_id: call_id.to_string(),
                reason: to_caller,
            },
        },
        Delivery {
            to: vec![Address::User(call.callee_id)],
            event: CallEvent::CallEnded {
                call_id: call_id.to_string(),
                reason: to_callee,
            },
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn caller(user_id: i64, conn: ConnId) -> Caller {
        Caller {
            user_id,
            username: format!("user{user_id}"),
            conn,
        }
    }

    #[test]
    fn room_names() {
        assert_eq!(room_name("  Team Sync ").expect("valid").1, "team sync");
        assert_eq!(
            room_name("_user1").expect_err("reserved").code(),
            ErrorCode::RoomNameReserved
        );
        assert_eq!(
            room_name("").expect_err("empty").code(),
            ErrorCode::ValidationFailed
        );
        assert_eq!(
            room_name("a/b").expect_err("slash").code(),
            ErrorCode::ValidationFailed
        );
        assert_eq!(
            room_name(&"x".repeat(65)).expect_err("long").code(),
            ErrorCode::ValidationFailed
        );
        assert!(room_name("Café 2.0-b").is_ok());
        assert_eq!(
            room_name("Cafe\u{301}").expect("decomposed").1,
            room_name("Caf\u{e9}").expect("composed").1
        );
        assert!(room_name("\u{200B}").is_err(), "invisible only");
        assert!(room_name("\u{3164}").is_err(), "a blank letter only");
        assert!(room_name("a\u{202E}b").is_err(), "bidi override");
    }

    #[test]
    fn held_seat_expires_unless_taken_back() {
        let mut registry = Registry::default();
        let (a, b) = (caller(1, 10), caller(2, 20));
        registry.create(&a, "r", 6).expect("create");
        registry.join(&b, "r").expect("join");
        let (_, held) = registry.disconnected(20, true);
        let held = held.expect("seat held");
        // Taken back on a new connection: the old timer does nothing.
        registry
            .rejoin(&caller(2, 21), "r", &held.peer_id)
            .expect("rejoin");
        assert!(registry.expire(&held).is_empty());
        let (_, held) = registry.disconnected(21, true);
        let left = registry.expire(&held.expect("held again"));
        assert!(matches!(
            left[0].event,
            CallEvent::MemberLeft {
                reason: LeaveReason::Timeout,
                ..
            }
        ));
    }

    #[test]
    fn creator_role_passes_on_and_empty_rooms_close() {
        let mut registry = Registry::default();
        let (a, b) = (caller(1, 10), caller(2, 20));
        registry.create(&a, "r", 6).expect("create");
        registry.join(&b, "r").expect("join");
        let out = registry.leave(&a).expect("leave");
        let CallEvent::MemberLeft { creator, .. } = &out[0].event else {
            panic!("expected member_left");
        };
        assert_eq!(
            registry.view_for_member(2, "R").expect("view").creator,
            *creator
        );
        registry.leave(&b).expect("leave");
        assert!(registry.join(&caller(3, 30), "r").is_err(), "room closed");
        registry
            .create(&caller(3, 30), "r", 6)
            .expect("name free again");
    }
}
