-- Conversations replace pairs of users: a direct conversation per pair (or a group), its members
-- with their read positions, and one event log of everything a member must learn, in one
-- sequence across all conversations. A message is the event that created it: its id is its seq.
-- (The writers' release order needs the identity sequence's default CACHE 1: see chat/writer.rs.)

CREATE TABLE conversations (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind VARCHAR(16) NOT NULL,
    title VARCHAR(128),
    -- A direct conversation's two users, smaller id first (NULL in a group): one per pair.
    direct_low BIGINT REFERENCES users (id) ON DELETE CASCADE,
    direct_high BIGINT REFERENCES users (id) ON DELETE CASCADE,
    created_by BIGINT REFERENCES users (id) ON DELETE SET NULL,
    created_at TIMESTAMP NOT NULL,
    UNIQUE (direct_low, direct_high)
);

CREATE TABLE conversation_members (
    conversation_id BIGINT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    user_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role VARCHAR(16) NOT NULL,
    joined_at TIMESTAMP NOT NULL,
    -- The member sees the events from joined_seq on, up to left_seq once they have left.
    joined_seq BIGINT NOT NULL,
    left_seq BIGINT,
    last_read_seq BIGINT NOT NULL,
    muted BOOLEAN NOT NULL DEFAULT FALSE,
    PRIMARY KEY (conversation_id, user_id)
);
CREATE INDEX conversation_members_user ON conversation_members (user_id, conversation_id);

CREATE TABLE events (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    conversation_id BIGINT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    kind VARCHAR(16) NOT NULL,
    sender_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    body TEXT NOT NULL,
    client_msg_id VARCHAR(64) NOT NULL,
    created_at TIMESTAMP NOT NULL,
    UNIQUE (sender_id, client_msg_id)
);
CREATE INDEX events_conversation ON events (conversation_id, seq);

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
OVERRIDING SYSTEM VALUE
SELECT m.id, c.id, m.kind, m.sender_id, m.body, m.client_msg_id, m.created_at
  FROM messages m
  JOIN conversations c ON c.direct_low = m.user_low AND c.direct_high = m.user_high;

-- The sequence goes on above every id ever handed out (rows of deleted users included), so no
-- new event falls at or below a cursor a client holds.
SELECT setval(pg_get_serial_sequence('events', 'seq'), GREATEST(handed_out, 1), handed_out > 0)
  FROM (SELECT GREATEST(
                 (SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM messages_id_seq),
                 (SELECT COALESCE(MAX(seq), 0) FROM events)) AS handed_out) AS sequence_end;

DROP TABLE conversation_reads;
DROP TABLE messages;
