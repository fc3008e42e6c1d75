"""The store: SQLAlchemy tables, repositories and Alembic migrations (SQLite default,
PostgreSQL by URL). Nothing below routing/accounts/audit imports it."""
