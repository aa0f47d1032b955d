ALTER TABLE users ADD COLUMN last_seen_at TIMESTAMP;

CREATE TABLE messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    sender_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    recipient_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- The pair, smaller id first: one index serves a conversation's history in both directions.
    user_low INTEGER NOT NULL,
    user_high INTEGER NOT NULL,
    kind TEXT NOT NULL,
    body TEXT NOT NULL,
    client_msg_id TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    UNIQUE (sender_id, client_msg_id)
);
CREATE INDEX messages_recipient ON messages (recipient_id, id);
CREATE INDEX messages_sender ON messages (sender_id, id);
CREATE INDEX messages_pair ON messages (user_low, user_high, id);

CREATE TABLE conversation_reads (
    user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    peer_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    last_read_id INTEGER NOT NULL,
    PRIMARY KEY (user_id, peer_id)
);
