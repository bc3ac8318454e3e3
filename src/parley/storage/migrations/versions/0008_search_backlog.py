"""SQLite full-text search: index new messages after they are stored, not while.

Through 0007 a trigger wrote every new message into the FTS5 index inside the transaction
that stored it, which made the index the largest part of a send's commit. From here the
insert trigger only notes the message in ``message_search_backlog`` (one row keyed by an
integer); ``parley.storage.db.SearchBacklog`` moves waiting messages into the index in
larger transactions, when the message writer has time, and before every message search,
so that a search still finds every message acknowledged before it.

The update and delete triggers of 0005 stay: they work whether or not a message has been
indexed yet. An edit of a waiting message indexes its new text at once (the backlog then
skips it, finding its key taken); a recall or delete leaves nothing for the backlog to
index (it skips messages without text, or gone).

PostgreSQL is unchanged: its GIN index (0005) defers work by itself (``fastupdate``).

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-29
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

# The 0005 trigger this migration replaces, for the downgrade.
INDEX_ON_INSERT = """CREATE TRIGGER messages_search_insert AFTER INSERT ON messages
    WHEN new.search_text IS NOT NULL BEGIN
        INSERT INTO message_search_keys (app_id, message_id) VALUES (new.app_id, new.id);
        INSERT INTO message_search (rowid, text) VALUES (last_insert_rowid(), new.search_text);
    END"""

# What the downgrade indexes before the backlog goes: what SearchBacklog would (the same
# statements, kept here so that the migration does not change when the code does).
INDEX_BACKLOG = [
    """INSERT OR IGNORE INTO message_search_keys (app_id, message_id)
    SELECT b.app_id, b.message_id FROM message_search_backlog b
    JOIN messages m ON m.app_id = b.app_id AND m.id = b.message_id
    WHERE m.search_text IS NOT NULL ORDER BY b.key""",
    # Every key has its index row, so the keys just added are those past the last row.
    """INSERT INTO message_search (rowid, text)
    SELECT k.key, m.search_text FROM message_search_keys k
    JOIN messages m ON m.app_id = k.app_id AND m.id = k.message_id
    WHERE k.key > coalesce((SELECT rowid FROM message_search ORDER BY rowid DESC LIMIT 1), 0)""",
]


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    op.execute(
        """CREATE TABLE message_search_backlog (
        key INTEGER PRIMARY KEY,
        app_id VARCHAR(36) NOT NULL,
        message_id VARCHAR(24) NOT NULL
    )"""
    )
    op.execute("DROP TRIGGER messages_search_insert")
    op.execute(
        """CREATE TRIGGER messages_search_backlog AFTER INSERT ON messages
    WHEN new.search_text IS NOT NULL BEGIN
        INSERT INTO message_search_backlog (app_id, message_id) VALUES (new.app_id, new.id);
    END"""
    )


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    op.execute("DROP TRIGGER messages_search_backlog")
    for statement in INDEX_BACKLOG:
        op.execute(statement)
    op.execute("DROP TABLE message_search_backlog")
    op.execute(INDEX_ON_INSERT)
