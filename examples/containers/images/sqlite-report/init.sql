-- Read by sqlite3 -init instead of ~/.sqliterc, so the provider's HOME and
-- passwd database play no part.
.bail on
