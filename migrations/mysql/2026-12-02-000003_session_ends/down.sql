DROP INDEX sessions_revoked_at ON sessions;
ALTER TABLE users DROP COLUMN disabled_at;
