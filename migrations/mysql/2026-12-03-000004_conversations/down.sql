-- Back to pairs: direct conversations' messages and read positions (groups are lost).
CREATE TABLE messages (
    id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    sender_id BIGINT NOT NULL,
    recipient_id BIGINT NOT NULL,
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

INSERT INTO messages
       (id, sender_id, recipient_id, user_low, user_high, kind, body, client_msg_id, created_at)
SELECT e.seq, e.sender_id,
       CASE WHEN e.sender_id = c.direct_low THEN c.direct_high ELSE c.direct_low END,
       c.direct_low, c.direct_high, e.kind, e.body, e.client_msg_id, e.created_at
  FROM events e
  JOIN conversations c ON c.id = e.conversation_id
 WHERE c.kind = 'direct' AND e.kind IN ('text', 'missed_call');

INSERT INTO conversation_reads (user_id, peer_id, last_read_id)
SELECT m.user_id,
       CASE WHEN m.user_id = c.direct_low THEN c.direct_high ELSE c.direct_low END,
       m.last_read_seq
  FROM conversation_members m
  JOIN conversations c ON c.id = m.conversation_id
 WHERE c.kind = 'direct' AND m.last_read_seq > 0;

DROP TABLE events;
DROP TABLE conversation_members;
DROP TABLE conversations;
