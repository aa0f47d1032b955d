//! Table definitions, written by hand in types every backend shares (the MultiConnection rule).

diesel::table! {
    users (id) {
        id -> BigInt,
        username -> Text,
        display_name -> Text,
        password_hash -> Text,
        created_at -> Timestamp,
        updated_at -> Timestamp,
        last_seen_at -> Nullable<Timestamp>,
        disabled_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    sessions (id) {
        id -> BigInt,
        user_id -> BigInt,
        created_at -> Timestamp,
        expires_at -> Timestamp,
        revoked_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    refresh_tokens (id) {
        id -> BigInt,
        session_id -> BigInt,
        token_hash -> Text,
        created_at -> Timestamp,
        used_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    conversations (id) {
        id -> BigInt,
        kind -> Text,
        title -> Nullable<Text>,
        direct_low -> Nullable<BigInt>,
        direct_high -> Nullable<BigInt>,
        created_by -> Nullable<BigInt>,
        created_at -> Timestamp,
    }
}

diesel::table! {
    conversation_members (conversation_id, user_id) {
        conversation_id -> BigInt,
        user_id -> BigInt,
        role -> Text,
        joined_at -> Timestamp,
        joined_seq -> BigInt,
        left_seq -> Nullable<BigInt>,
        last_read_seq -> BigInt,
        muted -> Bool,
    }
}

diesel::table! {
    events (seq) {
        seq -> BigInt,
        conversation_id -> BigInt,
        kind -> Text,
        sender_id -> BigInt,
        body -> Text,
        client_msg_id -> Text,
        created_at -> Timestamp,
    }
}

diesel::joinable!(sessions -> users (user_id));
diesel::joinable!(refresh_tokens -> sessions (session_id));
diesel::joinable!(conversation_members -> conversations (conversation_id));
diesel::joinable!(events -> conversations (conversation_id));
diesel::allow_tables_to_appear_in_same_query!(
    users,
    sessions,
    refresh_tokens,
    conversations,
    conversation_members,
    events
);
