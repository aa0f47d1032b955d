// Generated from server/src/ws/protocol.rs by `cargo test -p pychat protocol`.
// Do not edit: change the Rust types and run `PYCHAT_BLESS=1 cargo test -p pychat protocol`.

export type ClientEnvelope = { id?: string, } & ({ "type": "send", to: string, body: string, client_msg_id: string, } | { "type": "read", peer: string, up_to: number, } | { "type": "typing", to: string, } | { "type": "ping", });

export type ClientFrame = { "type": "send", to: string, body: string, client_msg_id: string, } | { "type": "read", peer: string, up_to: number, } | { "type": "typing", to: string, } | { "type": "ping", };

export type HelloUser = { id: number, username: string, display_name: string, };

export type ServerFrame = { "type": "hello", user: HelloUser, connection_id: string, heartbeat_interval_ms: number, protocol_version: number, } | { "type": "ack", id?: string, message: MessageView, } | { "type": "message", message: MessageView, } | { "type": "replay_end", 
/**
 * The newest message id replayed, or the cursor itself when there was nothing.
 */
last_id: number, replayed: number, } | { "type": "resync_required", newest_id: number, } | { "type": "read_receipt", by: string, up_to: number, } | { "type": "read_state", peer: string, up_to: number, unread: number, } | { "type": "typing", from: string, } | { "type": "presence", user: string, status: PresenceStatus, last_seen?: string, } | { "type": "ok", id?: string, } | { "type": "pong", id?: string, } | { "type": "error", id?: string, code: ErrorCode, message: string, };

export type MessageView = { 
/**
 * Server id: increases monotonically; order a conversation by it.
 */
id: number, from: string, to: string, kind: MessageKind, body: string, 
/**
 * The sender's idempotency key.
 */
client_msg_id: string, 
/**
 * Server time, UTC, RFC 3339.
 */
created_at: string, };

export type MessageKind = "text" | "missed_call";

export type PresenceStatus = "online" | "offline";

export type ErrorCode = "invalid_json" | "invalid_body" | "invalid_query" | "validation_failed" | "unsupported_media_type" | "payload_too_large" | "not_found" | "method_not_allowed" | "username_taken" | "invalid_credentials" | "missing_token" | "invalid_token" | "refresh_token_reused" | "user_not_found" | "invalid_ticket" | "invalid_frame" | "unknown_frame_type" | "rate_limited" | "database_unavailable" | "internal_error";
