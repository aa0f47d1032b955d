ALTER TABLE users ADD COLUMN last_seen_at TIMESTAMP;

CREATE TABLE messages (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    sender_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    recipient_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- The pair, smaller id first: one index serves a conversation's history in both directions.
    user_low BIGINT NOT NULL,
    user_high BIGINT NOT NULL,
    kind VARCHAR(16) NOT NULL,
    body TEXT NOT NULL,
    client_msg_id VARCHAR(64) NOT NULL,
    created_at TIMESTAMP NOT NULL,
    UNIQUE (sender_id, client_msg_id)
);
CREATE INDEX messages_recipient ON messages (recipient_id, id);
CREATE INDEX messages_sender ON messages (sender_id, id);
CREATE INDEX messages_pair ON messages (user_low, user_high, id);

CREATE TABLE conversation_reads (
    user_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    peer_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    last_read_id BIGINT NOT NULL,
    PRIMARY KEY (user_id, peer_id)
);
