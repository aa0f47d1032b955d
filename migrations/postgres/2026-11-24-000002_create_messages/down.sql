DROP TABLE conversation_reads;
DROP TABLE messages;
ALTER TABLE users DROP COLUMN last_seen_at;
