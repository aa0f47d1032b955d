-- Conversations replace pairs of users: a direct conversation per pair (or a group), its members
-- with their read positions, and one event log of everything a member must learn, in one
-- sequence across all conversations. A message is the event that created it: its id is its seq.

CREATE TABLE conversations (
    id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    kind VARCHAR(16) NOT NULL,
    title VARCHAR(128) NULL,
    -- A direct conversation's two users, smaller id first (NULL in a group): one per pair.
    direct_low BIGINT NULL,
    direct_high BIGINT NULL,
    created_by BIGINT NULL,
    created_at DATETIME(6) NOT NULL,
    UNIQUE KEY conversations_direct (direct_low, direct_high),
    CONSTRAINT conversations_low_fk FOREIGN KEY (direct_low) REFERENCES users (id) ON DELETE CASCADE,
    CONSTRAINT conversations_high_fk FOREIGN KEY (direct_high) REFERENCES users (id) ON DELETE CASCADE,
    CONSTRAINT conversations_creator_fk FOREIGN KEY (created_by) REFERENCES users (id) ON DELETE SET NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;

CREATE TABLE conversation_members (
    conversation_id BIGINT NOT NULL,
    user_id BIGINT NOT NULL,
    role VARCHAR(16) NOT NULL,
    joined_at DATETIME(6) NOT NULL,
    -- The member sees the events from joined_seq on, up to left_seq once they have left.
    joined_seq BIGINT NOT NULL,
    left_seq BIGINT NULL,
    last_read_seq BIGINT NOT NULL,
    muted BOOLEAN NOT NULL DEFAULT FALSE,
    PRIMARY KEY (conversation_id, user_id),
    KEY conversation_members_user (user_id, conversation_id),
    CONSTRAINT conversation_members_conversation_fk FOREIGN KEY (conversation_id) REFERENCES conversations (id) ON DELETE CASCADE,
    CONSTRAINT conversation_members_user_fk FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;

CREATE TABLE events (
    seq BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    conversation_id BIGINT NOT NULL,
    kind VARCHAR(16) NOT NULL,
    sender_id BIGINT NOT NULL,
    body TEXT NOT NULL,
    client_msg_id VARCHAR(64) NOT NULL,
    created_at DATETIME(6) NOT NULL,
    UNIQUE KEY events_idempotency (sender_id, client_msg_id),
    KEY events_conversation (conversation_id, seq),
    CONSTRAINT events_conversation_fk FOREIGN KEY (conversation_id) REFERENCES conversations (id) ON DELETE CASCADE,
    CONSTRAINT events_sender_fk FOREIGN KEY (sender_id) REFERENCES users (id) ON DELETE CASCADE
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;

-- Every pair that has a message becomes a direct conversation, started by the first sender.
INSERT INTO conversations (kind, title, direct_low, direct_high, created_by, created_at)
SELECT 'direct', NULL, m.user_low, m.user_high,
       (SELECT f.sender_id FROM messages f
         WHERE f.user_low = m.user_low AND f.user_high = m.user_high ORDER BY f.id LIMIT 1),
       MIN(m.created_at)
  FROM messages m
 GROUP BY m.user_low, m.user_high
 ORDER BY MIN(m.id);

INSERT INTO conversation_members
       (conversation_id, user_id, role, joined_at, joined_seq, left_seq, last_read_seq, muted)
SELECT c.id, c.direct_low, 'member', c.created_at, 0, NULL, COALESCE(r.last_read_id, 0), FALSE
  FROM conversations c
  LEFT JOIN conversation_reads r ON r.user_id = c.direct_low AND r.peer_id = c.direct_high;

INSERT INTO conversation_members
       (conversation_id, user_id, role, joined_at, joined_seq, left_seq, last_read_seq, muted)
SELECT c.id, c.direct_high, 'member', c.created_at, 0, NULL, COALESCE(r.last_read_id, 0), FALSE
  FROM conversations c
  LEFT JOIN conversation_reads r ON r.user_id = c.direct_high AND r.peer_id = c.direct_low
 WHERE c.direct_high <> c.direct_low;

-- Messages keep their ids as seqs: clients' resume cursors and read positions stay valid.
INSERT INTO events (seq, conversation_id, kind, sender_id, body, client_msg_id, created_at)
SELECT m.id, c.id, m.kind, m.sender_id, m.body, m.client_msg_id, m.created_at
  FROM messages m
  JOIN conversations c ON c.direct_low = m.user_low AND c.direct_high = m.user_high;

-- The sequence goes on above every id ever handed out (rows of deleted users included), so no
-- new event falls at or below a cursor a client holds. (InnoDB raises a lower value to MAX + 1.)
SET @events_next = (SELECT COALESCE(MAX(AUTO_INCREMENT), 1) FROM information_schema.TABLES
                     WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'messages');
SET @events_next_sql = CONCAT('ALTER TABLE events AUTO_INCREMENT = ', @events_next);
PREPARE events_next_statement FROM @events_next_sql;
EXECUTE events_next_statement;
DEALLOCATE PREPARE events_next_statement;

DROP TABLE conversation_reads;
DROP TABLE messages;
