//! A group's call: a mesh room tied to the conversation, with the session started from the
//! first moment. Starting it rings every other member; any member joins while it lasts (by
//! answering the ring, or by calling the group again); it ends when its last member leaves.

use serde::{Deserialize, Serialize};

use crate::calls::{CallEndReason, CallEvent, CallMedia, LeaveReason};
use crate::error::{AppError, ErrorCode};

use super::{Address, Caller, Delivery, Registry, Room, error, instance_of};

/// Group call rooms are named under this reserved prefix.
const GROUP_PREFIX: &str = "_group-";

/// What makes a room a group's call.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConversationCall {
    pub conversation_id: i64,
    pub call_id: String,
    pub media: CallMedia,
    pub starter_id: i64,
    pub starter_name: String,
    /// Unix milliseconds, for the duration recorded when it ends.
    pub started_at_ms: i64,
    /// Members whose devices are ringing still.
    pub ringing: Vec<i64>,
    /// The instance whose timer stops the ringing.
    pub ring_instance: u32,
}

/// A group call that ended: the service records it in the group's history.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EndedCall(pub ConversationCall);

/// A group call to start, if the group has none going on.
pub struct NewGroupCall<'a> {
    pub call_id: String,
    pub conversation_id: i64,
    /// The group's current members (the caller's membership is checked by the service): all
    /// but the caller are rung.
    pub members: &'a [i64],
    pub media: CallMedia,
    pub max_peers: u32,
    /// Unix milliseconds now.
    pub now_ms: i64,
}

/// How a member came into a group's call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry {
    /// The call did not exist: this member started it.
    Started,
    Joined,
}

fn stopped_ringing(
    call_id: &str,
    users: impl IntoIterator<Item = i64>,
    reason: CallEndReason,
) -> Vec<Delivery> {
    let to: Vec<Address> = users.into_iter().map(Address::User).collect();
    if to.is_empty() {
        return Vec::new();
    }
    vec![Delivery {
        to,
        event: CallEvent::CallEnded {
            call_id: call_id.to_string(),
            reason,
        },
    }]
}

impl Registry {
    /// The room of the group call `call_id`, if it is going on.
    pub(super) fn conversation_room_of_call(&self, call_id: &str) -> Option<String> {
        self.rooms
            .iter()
            .find(|(_, r)| {
                r.conversation
                    .as_ref()
                    .is_some_and(|c| c.call_id == call_id)
            })
            .map(|(key, _)| key.clone())
    }

    fn conversation_room(&self, conversation_id: i64) -> Option<String> {
        self.rooms
            .iter()
            .find(|(_, r)| {
                r.conversation
                    .as_ref()
                    .is_some_and(|c| c.conversation_id == conversation_id)
            })
            .map(|(key, _)| key.clone())
    }

    /// The group whose call `call_id` is (for the caller's membership check).
    pub fn conversation_of_call(&self, call_id: &str) -> Option<i64> {
        let key = self.conversation_room_of_call(call_id)?;
        self.rooms
            .get(&key)?
            .conversation
            .as_ref()
            .map(|c| c.conversation_id)
    }

    /// Calls a group: joins its call if one is going on, or starts the one `call` describes.
    pub fn call_conversation(
        &mut self,
        who: &Caller,
        call: NewGroupCall<'_>,
    ) -> Result<(CallEvent, Vec<Delivery>, Entry), AppError> {
        let NewGroupCall {
            call_id,
            conversation_id,
            members,
            media,
            max_peers,
            now_ms,
        } = call;
        self.ensure_free(who.conn)?;
        if let Some(key) = self.conversation_room(conversation_id) {
            let (peer_id, deliveries) = self.enter(&key, who)?;
            let room = self.rooms.get(&key).map(Room::view).ok_or_else(gone)?;
            return Ok((
                CallEvent::RoomJoined { room, peer_id },
                deliveries,
                Entry::Joined,
            ));
        }
        let member = self.new_member(who);
        let peer_id = member.peer_id.clone();
        let ringing: Vec<i64> = members
            .iter()
            .copied()
            .filter(|&u| u != who.user_id)
            .collect();
        let key = format!("{GROUP_PREFIX}{call_id}");
        let room = Room {
            name: key.clone(),
            creator: peer_id.clone(),
            session_started: true,
            direct: false,
            max_peers,
            members: vec![member],
            conversation: Some(ConversationCall {
                conversation_id,
                call_id: call_id.clone(),
                media,
                starter_id: who.user_id,
                starter_name: who.username.clone(),
                started_at_ms: now_ms,
                ringing: ringing.clone(),
                ring_instance: instance_of(who.conn),
            }),
        };
        let view = room.view();
        let ring = Delivery {
            to: ringing.into_iter().map(Address::User).collect(),
            event: CallEvent::IncomingCall {
                call_id,
                from: who.username.clone(),
                media,
                conversation_id: Some(conversation_id),
            },
        };
        self.rooms.insert(key.clone(), room);
        self.by_conn.insert(who.conn, key);
        Ok((
            CallEvent::RoomJoined {
                room: view,
                peer_id,
            },
            vec![ring],
            Entry::Started,
        ))
    }

    /// Seats `who` in the group call `key`: the others are told, and `who`'s other devices stop
    /// ringing. Returns the new peer id.
    fn enter(&mut self, key: &str, who: &Caller) -> Result<(String, Vec<Delivery>), AppError> {
        let room = self.rooms.get(key).ok_or_else(gone)?;
        if room.members.len() >= room.max_peers as usize {
            return Err(error(ErrorCode::RoomFull, "the call is full"));
        }
        let member = self.new_member(who);
        let peer_id = member.peer_id.clone();
        let member_view = member.view();
        let room = self.rooms.get_mut(key).ok_or_else(gone)?;
        room.members.push(member);
        let mut deliveries = vec![Delivery {
            to: room.targets_except(&peer_id),
            event: CallEvent::MemberJoined {
                room: room.name.clone(),
                member: member_view,
            },
        }];
        if let Some(call) = room.conversation.as_mut()
            && let Some(at) = call.ringing.iter().position(|&u| u == who.user_id)
        {
            call.ringing.swap_remove(at);
            deliveries.push(Delivery {
                to: vec![Address::UserExcept {
                    user_id: who.user_id,
                    conn: who.conn,
                }],
                event: CallEvent::CallEnded {
                    call_id: call.call_id.clone(),
                    reason: CallEndReason::AnsweredElsewhere,
                },
            });
        }
        self.by_conn.insert(who.conn, key.to_string());
        Ok((peer_id, deliveries))
    }

    /// A ringing member answers: seated in the call, told with `call_accepted`.
    pub(super) fn accept_conversation_call(
        &mut self,
        key: &str,
        who: &Caller,
    ) -> Result<Vec<Delivery>, AppError> {
        let (peer_id, mut deliveries) = self.enter(key, who)?;
        let room = self.rooms.get(key).ok_or_else(gone)?;
        let call_id = room
            .conversation
            .as_ref()
            .map(|c| c.call_id.clone())
            .unwrap_or_default();
        deliveries.push(Delivery {
            to: vec![Address::Conn {
                user_id: who.user_id,
                conn: who.conn,
            }],
            event: CallEvent::CallAccepted {
                call_id,
                room: room.view(),
                peer_id,
            },
        });
        Ok(deliveries)
    }

    /// A member declines: their devices stop ringing; the call goes on.
    pub(super) fn decline_conversation_call(
        &mut self,
        key: &str,
        who: &Caller,
    ) -> Result<Vec<Delivery>, AppError> {
        let call = self
            .rooms
            .get_mut(key)
            .and_then(|r| r.conversation.as_mut())
            .ok_or_else(gone)?;
        let Some(at) = call.ringing.iter().position(|&u| u == who.user_id) else {
            return Err(error(
                ErrorCode::CallNotFound,
                "no such ringing call for you",
            ));
        };
        call.ringing.swap_remove(at);
        Ok(stopped_ringing(
            &call.call_id,
            [who.user_id],
            CallEndReason::StoppedRinging,
        ))
    }

    /// `user_id` is no longer a member of the group (removed by `by`, or left): each of their
    /// connections in its call is told `room_ended` and loses its seat (the others see them
    /// leave), and their devices stop ringing.
    pub fn member_gone(&mut self, conversation_id: i64, user_id: i64, by: &str) -> Vec<Delivery> {
        let Some(key) = self.conversation_room(conversation_id) else {
            return Vec::new();
        };
        let Some(room) = self.rooms.get_mut(&key) else {
            return Vec::new();
        };
        let mut deliveries = Vec::new();
        if let Some(call) = room.conversation.as_mut()
            && let Some(at) = call.ringing.iter().position(|&u| u == user_id)
        {
            call.ringing.swap_remove(at);
            deliveries.extend(stopped_ringing(
                &call.call_id,
                [user_id],
                CallEndReason::Cancelled,
            ));
        }
        let seats: Vec<(String, Option<Address>)> = room
            .members
            .iter()
            .filter(|m| m.user_id == user_id)
            .map(|m| (m.peer_id.clone(), m.target()))
            .collect();
        let name = room.name.clone();
        for (peer_id, target) in seats {
            if let Some(target) = target {
                deliveries.push(Delivery {
                    to: vec![target],
                    event: CallEvent::RoomEnded {
                        room: name.clone(),
                        by: by.to_string(),
                    },
                });
            }
            deliveries.extend(self.remove_member(&key, &peer_id, LeaveReason::Left));
        }
        deliveries
    }

    /// The ring timeout of group call `call_id` ran out: whoever has not answered stops ringing.
    pub fn conversation_ring_timeout(&mut self, call_id: &str) -> Vec<Delivery> {
        let Some(key) = self.conversation_room_of_call(call_id) else {
            return Vec::new();
        };
        let Some(call) = self
            .rooms
            .get_mut(&key)
            .and_then(|r| r.conversation.as_mut())
        else {
            return Vec::new();
        };
        let ringing = std::mem::take(&mut call.ringing);
        stopped_ringing(call_id, ringing, CallEndReason::StoppedRinging)
    }

    /// The ringing of every group call started on `instance` stops (its timer died with it).
    pub(super) fn stop_ringing_from(&mut self, instance: u32) -> Vec<Delivery> {
        let mut deliveries = Vec::new();
        for room in self.rooms.values_mut() {
            if let Some(call) = room.conversation.as_mut()
                && call.ring_instance == instance
            {
                let ringing = std::mem::take(&mut call.ringing);
                deliveries.extend(stopped_ringing(
                    &call.call_id,
                    ringing,
                    CallEndReason::StoppedRinging,
                ));
            }
        }
        deliveries
    }

    /// A room closed: if it was a group's call, its ringing stops and it is recorded as ended.
    pub(super) fn call_over(&mut self, room: Room) -> Vec<Delivery> {
        let Some(call) = room.conversation else {
            return Vec::new();
        };
        let deliveries = stopped_ringing(
            &call.call_id,
            call.ringing.iter().copied(),
            CallEndReason::Cancelled,
        );
        self.ended.push(EndedCall(call));
        deliveries
    }

    /// Takes the group calls that ended since the last call.
    pub fn take_ended(&mut self) -> Vec<EndedCall> {
        std::mem::take(&mut self.ended)
    }

    /// The group calls going on, by conversation.
    pub fn active_calls(&self) -> Vec<(i64, crate::chat::ActiveCall)> {
        self.rooms
            .values()
            .filter_map(|room| {
                let call = room.conversation.as_ref()?;
                Some((
                    call.conversation_id,
                    crate::chat::ActiveCall {
                        call_id: call.call_id.clone(),
                        media: call.media,
                        started_by: call.starter_name.clone(),
                        participants: room.members.iter().map(|m| m.username.clone()).collect(),
                    },
                ))
            })
            .collect()
    }
}

fn gone() -> AppError {
    error(ErrorCode::CallNotFound, "that call is over")
}

#[cfg(test)]
mod tests {
    use super::super::tests::caller;
    use super::*;

    /// A call of group 7 of members 1, 2 and 3, at most `max_peers` in it.
    fn call_of_three(call_id: &str, max_peers: u32) -> NewGroupCall<'static> {
        NewGroupCall {
            call_id: call_id.into(),
            conversation_id: 7,
            members: &[1, 2, 3],
            media: CallMedia::Audio,
            max_peers,
            now_ms: 0,
        }
    }

    fn start(registry: &mut Registry, who: &Caller, members: &[i64]) -> String {
        let (reply, _, entry) = registry
            .call_conversation(
                who,
                NewGroupCall {
                    call_id: "c1".into(),
                    conversation_id: 7,
                    members,
                    media: CallMedia::Audio,
                    max_peers: 6,
                    now_ms: 1_000,
                },
            )
            .expect("start");
        assert_eq!(entry, Entry::Started);
        let CallEvent::RoomJoined { room, .. } = reply else {
            panic!("expected room_joined");
        };
        room.name
    }

    #[test]
    fn a_second_call_to_the_group_joins_the_first() {
        let mut registry = Registry::default();
        start(&mut registry, &caller(1, 10), &[1, 2, 3]);
        let (_, deliveries, entry) = registry
            .call_conversation(&caller(2, 20), call_of_three("c2", 6))
            .expect("join");
        assert_eq!(entry, Entry::Joined);
        // Bob's other devices stop ringing; Carol's still ring.
        assert!(deliveries.iter().any(|d| matches!(
            d.event,
            CallEvent::CallEnded {
                reason: CallEndReason::AnsweredElsewhere,
                ..
            }
        )));
        let stopped = registry.conversation_ring_timeout("c1");
        assert_eq!(stopped[0].to, vec![Address::User(3)]);
        assert!(registry.conversation_ring_timeout("c1").is_empty(), "once");
    }

    #[test]
    fn the_last_one_out_ends_it_and_stops_the_ringing() {
        let mut registry = Registry::default();
        let alice = caller(1, 10);
        start(&mut registry, &alice, &[1, 2]);
        let out = registry.leave(&alice).expect("leave");
        assert!(matches!(
            out[0].event,
            CallEvent::CallEnded {
                reason: CallEndReason::Cancelled,
                ..
            }
        ));
        let ended = registry.take_ended();
        assert_eq!(ended.len(), 1);
        assert_eq!(
            (ended[0].0.conversation_id, ended[0].0.started_at_ms),
            (7, 1_000)
        );
        assert!(registry.take_ended().is_empty());
        assert!(registry.active_calls().is_empty());
    }

    #[test]
    fn a_full_call_refuses_one_more() {
        let mut registry = Registry::default();
        registry
            .call_conversation(&caller(1, 10), call_of_three("c1", 2))
            .expect("start");
        registry
            .call_conversation(&caller(2, 20), call_of_three("c1", 2))
            .expect("join");
        let full = registry
            .call_conversation(&caller(3, 30), call_of_three("c1", 2))
            .expect_err("full");
        assert_eq!(full.code(), ErrorCode::RoomFull);
    }
}
