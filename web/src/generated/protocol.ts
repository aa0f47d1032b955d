// Generated from server/src/ws/protocol.rs by `cargo test -p pychat protocol`.
// Do not edit: change the Rust types and run `PYCHAT_BLESS=1 cargo test -p pychat protocol`.

export type ClientEnvelope = { id?: string, } & ({ "type": "send", conversation_id?: number, to?: string, body: string, client_msg_id: string, } | { "type": "read", conversation_id?: number, peer?: string, up_to: number, } | { "type": "typing", conversation_id?: number, to?: string, } | { "type": "ping", } | { "type": "room_create", name: string, } | { "type": "room_join", name: string, } | { "type": "room_rejoin", name: string, peer_id: string, } | { "type": "room_leave", } | { "type": "room_end", } | { "type": "session_start", } | { "type": "signal", to: string, kind: SignalKind, payload: unknown, } | { "type": "peer_state", muted: boolean, camera: boolean, screen: boolean, } | { "type": "call", to?: string, conversation_id?: number, media: CallMedia, } | { "type": "call_accept", call_id: string, } | { "type": "call_decline", call_id: string, } | { "type": "call_cancel", call_id: string, });

export type ClientFrame = { "type": "send", conversation_id?: number, to?: string, body: string, client_msg_id: string, } | { "type": "read", conversation_id?: number, peer?: string, up_to: number, } | { "type": "typing", conversation_id?: number, to?: string, } | { "type": "ping", } | { "type": "room_create", name: string, } | { "type": "room_join", name: string, } | { "type": "room_rejoin", name: string, peer_id: string, } | { "type": "room_leave", } | { "type": "room_end", } | { "type": "session_start", } | { "type": "signal", to: string, kind: SignalKind, payload: unknown, } | { "type": "peer_state", muted: boolean, camera: boolean, screen: boolean, } | { "type": "call", to?: string, conversation_id?: number, media: CallMedia, } | { "type": "call_accept", call_id: string, } | { "type": "call_decline", call_id: string, } | { "type": "call_cancel", call_id: string, };

export type HelloUser = { id: number, username: string, display_name: string, };

export type ServerFrame = { "type": "hello", user: HelloUser, connection_id: string, heartbeat_interval_ms: number, protocol_version: number, } | { "type": "ack", id?: string, message: MessageView, } | { "type": "message", message: MessageView, } | { "type": "replay_end", 
/**
 * The newest message id replayed, or the cursor itself when there was nothing.
 */
last_id: number, replayed: number, } | { "type": "resync_required", newest_id: number, } | { "type": "read_receipt", conversation_id: number, by: string, up_to: number, 
/**
 * The read's event in the log: resume after the highest `seq` or message id seen.
 */
seq: number, } | { "type": "read_state", conversation_id: number, 
/**
 * In a direct conversation: the other user.
 */
peer?: string, up_to: number, unread: number, 
/**
 * The read's event in the log; absent when the read moved nothing (it is not logged).
 */
seq?: number, } | { "type": "typing", conversation_id: number, from: string, } | { "type": "presence", user: string, status: PresenceStatus, last_seen?: string, } | { "type": "ok", id?: string, } | { "type": "pong", id?: string, } | { "type": "room_created", id?: string, room: RoomView, peer_id: string, } | { "type": "room_joined", id?: string, room: RoomView, peer_id: string, } | { "type": "member_joined", room: string, member: MemberView, } | { "type": "member_left", room: string, peer_id: string, username: string, reason: LeaveReason, creator: string, } | { "type": "member_disconnected", room: string, peer_id: string, } | { "type": "member_reconnected", room: string, peer_id: string, } | { "type": "room_ended", room: string, by: string, } | { "type": "session_started", room: string, peers: Array<MemberView>, } | { "type": "signal", from: string, from_user: string, kind: SignalKind, payload: unknown, } | { "type": "peer_state", room: string, peer_id: string, username: string, muted: boolean, camera: boolean, screen: boolean, } | { "type": "incoming_call", call_id: string, from: string, media: CallMedia, 
/**
 * The group being called (absent for a direct call).
 */
conversation_id?: number, } | { "type": "call_ringing", id?: string, call_id: string, to: string, media: CallMedia, } | { "type": "call_accepted", call_id: string, room: RoomView, peer_id: string, } | { "type": "call_ended", call_id: string, reason: CallEndReason, } | { "type": "error", id?: string, code: ErrorCode, message: string, };

export type MessageView = { 
/**
 * Server id: its seq in the event log, which increases monotonically across all
 * conversations; order a conversation by it, resume after the highest seen.
 */
id: number, 
/**
 * The conversation it belongs to.
 */
conversation_id: number, from: string, 
/**
 * In a direct conversation: the other user. Absent in a group.
 */
to?: string, kind: MessageKind, 
/**
 * The text of a message; empty for a change.
 */
body: string, 
/**
 * The sender's idempotency key (the server's own, starting with `~`, for changes).
 */
client_msg_id: string, 
/**
 * Server time, UTC, RFC 3339.
 */
created_at: string, 
/**
 * A change's users: added, removed, given a role, or the new owner.
 */
subjects?: Array<string>, 
/**
 * The role a `role_changed` gave.
 */
role?: Role, 
/**
 * A group's title, as created or renamed.
 */
title?: string, 
/**
 * The call a `call_started` or `call_ended` is about.
 */
call?: CallSummary, };

export type CallSummary = { call_id: string, media: CallMedia, 
/**
 * How long it lasted, in whole seconds (on `call_ended`).
 */
duration_secs?: number, };

export type MessageKind = "text" | "missed_call" | "group_created" | "members_added" | "member_removed" | "member_left" | "role_changed" | "title_changed" | "call_started" | "call_ended";

export type Role = "member" | "admin" | "owner";

export type PresenceStatus = "online" | "offline";

export type RoomView = { name: string, 
/**
 * The creator's peer id.
 */
creator: string, creator_username: string, session_started: boolean, 
/**
 * A direct call's private room: nobody can join it by name.
 */
direct: boolean, 
/**
 * The group whose call this is (nobody joins it by name; its members join with
 * `call {conversation_id}`).
 */
conversation_id?: number, 
/**
 * A group call's id (as in `incoming_call`).
 */
call_id?: string, max_peers: number, 
/**
 * In the order they joined.
 */
members: Array<MemberView>, };

export type MemberView = { 
/**
 * Issued by the server per connection; one user with two tabs is two peers.
 */
peer_id: string, username: string, muted: boolean, camera: boolean, screen: boolean, 
/**
 * False while the member's connection is gone and its seat is held for the grace period.
 */
connected: boolean, };

export type SignalKind = "offer" | "answer" | "candidate" | "end_of_candidates";

export type CallMedia = "audio" | "video";

export type LeaveReason = "left" | "timeout";

export type CallEndReason = "declined" | "cancelled" | "timeout" | "missed" | "answered_elsewhere" | "stopped_ringing";

export type ErrorCode = "invalid_json" | "invalid_body" | "invalid_query" | "validation_failed" | "unsupported_media_type" | "payload_too_large" | "not_found" | "method_not_allowed" | "username_taken" | "invalid_credentials" | "missing_token" | "invalid_token" | "refresh_token_reused" | "account_disabled" | "user_not_found" | "conversation_not_found" | "forbidden" | "not_a_group" | "group_full" | "member_not_found" | "invalid_ticket" | "origin_not_allowed" | "invalid_frame" | "unknown_frame_type" | "rate_limited" | "room_exists" | "room_name_reserved" | "room_not_found" | "room_full" | "already_in_room" | "not_in_room" | "not_room_creator" | "session_not_started" | "peer_not_found" | "call_not_found" | "busy" | "database_unavailable" | "service_unavailable" | "internal_error";
