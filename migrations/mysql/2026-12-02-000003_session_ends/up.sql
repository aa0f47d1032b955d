-- A disabled account cannot sign in, and its sessions are revoked.
ALTER TABLE users ADD COLUMN disabled_at DATETIME(6) NULL;
-- Every instance looks up the sessions revoked in the last seconds to close their sockets.
CREATE INDEX sessions_revoked_at ON sessions (revoked_at);
