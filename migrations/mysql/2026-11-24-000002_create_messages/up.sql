ALTER TABLE users ADD COLUMN last_seen_at DATETIME(6) NULL;

CREATE TABLE messages (
    id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    sender_id BIGINT NOT NULL,
    recipient_id BIGINT NOT NULL,
    -- The pair, smaller id first: one index serves a conversation's history in both directions.
    user_low BIGINT NOT NULL,
    user_high BIGINT NOT NULL,
    kind VARCHAR(16) NOT NULL,
    body TEXT NOT NULL,
    client_msg_id VARCHAR(64) NOT NULL,
    created_at DATETIME(6) NOT NULL,
    UNIQUE KEY messages_idempotency (sender_id, client_msg_id),
    KEY messages_recipient (recipient_id, id),
    KEY messages_sender (sender_id, id),
    KEY messages_pair (user_low, user_high, id),
    CONSTRAINT messages_sender_fk FOREIGN KEY (sender_id) REFERENCES users (id) ON DELETE CASCADE,
    CONSTRAINT messages_recipient_fk FOREIGN KEY (recipient_id) REFERENCES users (id) ON DELETE CASCADE
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;

CREATE TABLE conversation_reads (
    user_id BIGINT NOT NULL,
    peer_id BIGINT NOT NULL,
    last_read_id BIGINT NOT NULL,
    PRIMARY KEY (user_id, peer_id),
    CONSTRAINT conversation_reads_user_fk FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE,
    CONSTRAINT conversation_reads_peer_fk FOREIGN KEY (peer_id) REFERENCES users (id) ON DELETE CASCADE
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;
