-- Back to pairs: direct conversations' messages and read positions (groups are lost).
CREATE TABLE messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    sender_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    recipient_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
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
