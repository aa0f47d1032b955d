//! What each frame from the client does: parsed, checked against the connection's rate limit,
//! and handed to chat or calls (work that waits for storage runs beside the loop, its reply
//! sent when it is done).

use std::time::{Duration, Instant};

use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::calls::CallEvent;
use crate::chat::Target;
use crate::error::{AppError, ErrorCode};
use crate::ws::protocol::{ClientFrame, ServerFrame, frame_id, parse_client_frame};

use super::{Connection, Gone, MAX_STRIKES, close, error_frame};

/// One "typing" per target per this interval is relayed.
const TYPING_THROTTLE: Duration = Duration::from_secs(2);

/// The answer to a call frame: the reply event as its frame, `ok`, or the error.
fn call_frame(id: Option<String>, result: Result<Option<CallEvent>, AppError>) -> ServerFrame {
    match result {
        Ok(Some(event)) => ServerFrame::from_call(event, id),
        Ok(None) => ServerFrame::Ok { id },
        Err(err) => error_frame(id, &err),
    }
}

/// A frame that must name its conversation one way, and named it both ways or neither.
fn one_target_error(id: Option<String>) -> ServerFrame {
    ServerFrame::error(
        id,
        ErrorCode::InvalidFrame,
        "give exactly one of \"conversation_id\" and a user (\"to\" or \"peer\")",
    )
}

impl Connection {
    /// Handles one text frame; `Some` closes the connection with that reason.
    pub(super) async fn on_text(&mut self, text: &str) -> Result<Option<CloseFrame>, Gone> {
        if !self.bucket.take() {
            self.strikes += 1;
            if self.strikes >= MAX_STRIKES {
                return Ok(close(CloseCode::Policy, "rate limit exceeded"));
            }
            let frame = ServerFrame::error(
                frame_id(text),
                ErrorCode::RateLimited,
                "too many frames; slow down",
            );
            self.send(&frame).await?;
            return Ok(None);
        }
        self.strikes = 0;
        let envelope = match parse_client_frame(text) {
            Ok(envelope) => envelope,
            Err(err) => {
                self.send(&ServerFrame::error(err.id, err.code, err.message))
                    .await?;
                return Ok(None);
            }
        };
        let id = envelope.id;
        let chat = self.realtime().chat.clone();
        let identity = self.registration.identity.clone();
        match envelope.frame {
            ClientFrame::Ping {} => self.send(&ServerFrame::Pong { id }).await?,
            ClientFrame::Send {
                conversation_id,
                to,
                body,
                client_msg_id,
            } => {
                let origin = Some(self.registration.conn_id);
                self.start(async move {
                    let target = match (conversation_id, to.as_deref()) {
                        (Some(id), None) => Target::Conversation(id),
                        (None, Some(to)) => Target::User(to),
                        _ => return Some(one_target_error(id)),
                    };
                    Some(
                        match chat
                            .send(&identity, origin, target, &body, &client_msg_id)
                            .await
                        {
                            Ok(stored) => ServerFrame::Ack {
                                id,
                                message: stored.message,
                            },
                            Err(err) => error_frame(id, &err),
                        },
                    )
                });
            }
            ClientFrame::Read {
                conversation_id,
                peer,
                up_to,
            } => self.start(async move {
                let conversation = match (conversation_id, peer) {
                    (Some(conversation), None) => Ok(Some(conversation)),
                    // Nothing to read with someone you have no conversation with yet.
                    (None, Some(peer)) => chat.direct_id(&identity, &peer).await,
                    _ => return Some(one_target_error(id)),
                };
                let read = match conversation {
                    Ok(Some(conversation)) => chat
                        .mark_read(&identity, conversation, up_to)
                        .await
                        .map(|_| ()),
                    Ok(None) => Ok(()),
                    Err(err) => Err(err),
                };
                Some(match read {
                    Ok(()) => ServerFrame::Ok { id },
                    Err(err) => error_frame(id, &err),
                })
            }),
            ClientFrame::RoomCreate { name } => {
                let result = self
                    .realtime()
                    .calls
                    .create_room(&self.caller(), &name)
                    .await;
                self.send(&call_frame(id, result)).await?;
            }
            ClientFrame::RoomJoin { name } => {
                let result = self.realtime().calls.join_room(&self.caller(), &name).await;
                self.send(&call_frame(id, result)).await?;
            }
            ClientFrame::RoomRejoin { name, peer_id } => {
                let result = self
                    .realtime()
                    .calls
                    .rejoin_room(&self.caller(), &name, &peer_id)
                    .await;
                self.send(&call_frame(id, result)).await?;
            }
            ClientFrame::RoomLeave {} => {
                let result = self.realtime().calls.leave_room(&self.caller()).await;
                self.send(&call_frame(id, result)).await?;
            }
            ClientFrame::RoomEnd {} => {
                let result = self.realtime().calls.end_room(&self.caller()).await;
                self.send(&call_frame(id, result)).await?;
            }
            ClientFrame::SessionStart {} => {
                let result = self.realtime().calls.start_session(&self.caller()).await;
                self.send(&call_frame(id, result)).await?;
            }
            ClientFrame::Signal { to, kind, payload } => {
                let result = self
                    .realtime()
                    .calls
                    .signal(&self.caller(), &to, kind, payload)
                    .await;
                self.reply_on_error(id, result).await?;
            }
            ClientFrame::PeerState {
                muted,
                camera,
                screen,
            } => {
                let result = self
                    .realtime()
                    .calls
                    .peer_state(&self.caller(), (muted, camera, screen))
                    .await;
                self.send(&call_frame(id, result)).await?;
            }
            ClientFrame::Call {
                to,
                conversation_id,
                media,
            } => {
                let calls = self.realtime().calls.clone();
                let caller = self.caller();
                self.start(async move {
                    let target = match (conversation_id, to.as_deref()) {
                        (Some(id), None) => Target::Conversation(id),
                        (None, Some(to)) => Target::User(to),
                        _ => return Some(one_target_error(id)),
                    };
                    Some(call_frame(id, calls.call(&caller, target, media).await))
                });
            }
            ClientFrame::CallAccept { call_id } => {
                let result = self
                    .realtime()
                    .calls
                    .accept_call(&self.caller(), &call_id)
                    .await;
                self.reply_on_error(id, result).await?;
            }
            ClientFrame::CallDecline { call_id } => {
                let result = self
                    .realtime()
                    .calls
                    .decline_call(&self.caller(), &call_id)
                    .await;
                self.send(&call_frame(id, result)).await?;
            }
            ClientFrame::CallCancel { call_id } => {
                let calls = self.realtime().calls.clone();
                let caller = self.caller();
                self.start(async move {
                    Some(call_frame(id, calls.cancel_call(&caller, &call_id).await))
                });
            }
            ClientFrame::Typing {
                conversation_id,
                to,
            } => {
                let key = match (conversation_id, to.as_deref()) {
                    (Some(conversation), None) => format!("#{conversation}"),
                    (None, Some(to)) => to.to_string(),
                    _ => {
                        self.send(&one_target_error(id)).await?;
                        return Ok(None);
                    }
                };
                let now = Instant::now();
                let throttled = self.last_typing.as_ref().is_some_and(|(last, at)| {
                    last == &key && now.duration_since(*at) < TYPING_THROTTLE
                });
                if !throttled {
                    self.last_typing = Some((key, now));
                    self.start(async move {
                        let conversation = match (conversation_id, to) {
                            (Some(conversation), _) => Ok(conversation),
                            (None, to) => {
                                let to = to.unwrap_or_default();
                                match chat.direct_id(&identity, &to).await {
                                    Ok(Some(conversation)) => Ok(conversation),
                                    Ok(None) => Err(AppError::new(
                                        ErrorCode::ConversationNotFound,
                                        format!(
                                            "you have no conversation with {to:?} yet: send a message first"
                                        ),
                                    )),
                                    Err(err) => Err(err),
                                }
                            }
                        };
                        let typed = match conversation {
                            Ok(conversation) => chat.typing(&identity, conversation).await,
                            Err(err) => Err(err),
                        };
                        typed.err().map(|err| error_frame(id, &err))
                    });
                }
            }
        }
        Ok(None)
    }
}
