DROP INDEX sessions_revoked_at;
ALTER TABLE users DROP COLUMN disabled_at;
