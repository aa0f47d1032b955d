// Generated from the REST API's Rust types (server/src/api/typescript.rs) by `cargo test -p pychat rest_types`.
// Do not edit: change the Rust types and run `PYCHAT_BLESS=1 cargo test -p pychat rest_types`.

import type { CallMedia, ErrorCode, MessageView, PresenceStatus, Role } from './protocol';

export type UserView = { id: number, username: string, display_name: string, created_at: string, };

export type Profile = { presence: Presence, id: number, username: string, display_name: string, created_at: string, };

export type Presence = { status: PresenceStatus, 
/**
 * When the user's last connection closed (absent while online, or if never seen).
 */
last_seen?: string, };

export type AuthResponse = { user: UserView, 
/**
 * JWT for `Authorization: Bearer`.
 */
access_token: string, 
/**
 * Single-use: each refresh returns a new one. Also set as an httpOnly cookie.
 */
refresh_token: string, token_type: string, 
/**
 * Seconds until the access token expires.
 */
expires_in: number, };

export type UserList = { users: Array<UserView>, 
/**
 * Present when another page follows.
 */
next_after: string | null, };

export type ConversationType = "direct" | "group";

export type ConversationView = { id: number, kind: ConversationType, 
/**
 * A group's title (absent for a direct conversation: show the peer).
 */
title?: string, 
/**
 * The other user of a direct conversation.
 */
peer?: UserView, 
/**
 * The direct peer's presence.
 */
presence?: Presence, 
/**
 * Current members, you included.
 */
members_count: number, 
/**
 * Your role in it.
 */
role: Role, 
/**
 * The newest event (a message, or a change to a group); absent when there is none yet.
 */
last_message?: MessageView, 
/**
 * Messages from others after your read position.
 */
unread_count: number, 
/**
 * The newest message id you have read in this conversation (0: none).
 */
last_read_id: number, 
/**
 * In a direct conversation: how far the peer has read (0: none), for "read" ticks.
 */
peer_last_read_id?: number, 
/**
 * A group's call in progress: `call {conversation_id}` joins it.
 */
active_call?: ActiveCall, };

export type ActiveCall = { call_id: string, media: CallMedia, 
/**
 * Who started it.
 */
started_by: string, 
/**
 * The user names in it now, in the order they joined (one per device).
 */
participants: Array<string>, };

export type ConversationPage = { 
/**
 * Most recent first.
 */
conversations: Array<ConversationView>, 
/**
 * Pass as `before` for the next page; absent on the last one.
 */
next_before: number | null, };

export type HistoryPage = { 
/**
 * Oldest first.
 */
messages: Array<MessageView>, 
/**
 * Whether more messages lie beyond this page in the direction asked.
 */
has_more: boolean, };

export type ReadState = { conversation_id: number, 
/**
 * In a direct conversation: the other user.
 */
peer?: string, up_to: number, unread: number, };

export type ConversationMember = { user: UserView, role: Role, joined_at: string, };

export type MemberList = { 
/**
 * Owner first, then admins, then members, each by when they joined.
 */
members: Array<ConversationMember>, };

export type IceServer = { urls: Array<string>, username?: string, credential?: string, };

export type IceServers = { 
/**
 * Pass as `new RTCPeerConnection({iceServers})`.
 */
ice_servers: Array<IceServer>, 
/**
 * Seconds the TURN credentials stay valid (absent without TURN credentials).
 */
ttl?: number, };

export type ErrorBody = { error: ErrorDetail, };

export type ErrorDetail = { code: ErrorCode, message: string, fields?: Array<FieldError>, };

export type FieldError = { field: string, 
/**
 * Stable snake_case reason: `required`, `too_short`, `too_long`, `invalid_characters`, `reserved`.
 */
code: string, message: string, };
