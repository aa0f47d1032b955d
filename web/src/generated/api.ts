// Generated from the REST API's Rust types (server/src/api/typescript.rs) by `cargo test -p pychat rest_types`.
// Do not edit: change the Rust types and run `PYCHAT_BLESS=1 cargo test -p pychat rest_types`.

import type { ErrorCode, MessageView, PresenceStatus } from './protocol';

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

export type ConversationView = { peer: UserView, presence: Presence, last_message: MessageView, unread_count: number, 
/**
 * The newest message id the user has read in this conversation (0: none).
 */
last_read_id: number, 
/**
 * How far the peer has read the user's messages (0: none): "read" ticks after a reload.
 */
peer_last_read_id: number, };

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

export type ReadState = { peer: string, up_to: number, unread: number, };

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
