"""Built-in drivers: PostgreSQL (asyncpg), MySQL/MariaDB (asyncmy), SQLite (aiosqlite)."""
