-- Read by sqlite3 -init instead of ~/.sqliterc, so the provider's HOME and
-- passwd database play no part.
.bail on
-- Sorts and temporary indexes stay in memory: the job needs no writable
-- /tmp, and nothing depends on which temporary directory exists.
PRAGMA temp_store = MEMORY;
