"""The store: SQLAlchemy tables, repositories and Alembic migrations (SQLite default,
PostgreSQL by URL). Nothing below routing/accounts/audit imports it."""

import logging

# Alembic logs each plugin (at import) and each step at INFO: noise in a server's log; the
# store logs the revision it reached. Set before anything here imports alembic.
logging.getLogger("alembic").setLevel(logging.WARNING)
