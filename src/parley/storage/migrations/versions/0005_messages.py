"""Messages: client ids, edits, pins, reactions, hiding, batches, files, search.

Full-text search is built with each database's own engine:
- SQLite: an FTS5 table ``message_search`` kept in step with ``messages.search_text`` by
  triggers. FTS5 rows are keyed by ``message_search_keys.key``, an INTEGER PRIMARY KEY
  (stable through VACUUM, unlike the implicit rowid of ``messages``).
- PostgreSQL: a GIN index on ``to_tsvector('simple', search_text)``.
Neither is part of the SQLAlchemy models; ``parley.services.search`` queries them. A later
migration that rebuilds ``messages`` on SQLite must recreate the triggers.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

SQLITE_SEARCH = [
    """CREATE TABLE message_search_keys (
        key INTEGER PRIMARY KEY,
        app_id VARCHAR(36) NOT NULL,
        message_id VARCHAR(24) NOT NULL,
        UNIQUE (app_id, message_id)
    )""",
    "CREATE VIRTUAL TABLE message_search"
    " USING fts5(text, tokenize='unicode61 remove_diacritics 2')",
    """CREATE TRIGGER messages_search_insert AFTER INSERT ON messages
    WHEN new.search_text IS NOT NULL BEGIN
        INSERT INTO message_search_keys (app_id, message_id) VALUES (new.app_id, new.id);
        INSERT INTO message_search (rowid, text) VALUES (last_insert_rowid(), new.search_text);
    END""",
    """CREATE TRIGGER messages_search_delete AFTER DELETE ON messages BEGIN
        DELETE FROM message_search WHERE rowid IN (
            SELECT key FROM message_search_keys WHERE app_id = old.app_id AND message_id = old.id);
        DELETE FROM message_search_keys WHERE app_id = old.app_id AND message_id = old.id;
    END""",
    """CREATE TRIGGER messages_search_update AFTER UPDATE OF search_text ON messages BEGIN
        DELETE FROM message_search WHERE rowid IN (
            SELECT key FROM message_search_keys WHERE app_id = old.app_id AND message_id = old.id);
        DELETE FROM message_search_keys WHERE app_id = old.app_id AND message_id = old.id;
        INSERT INTO message_search_keys (app_id, message_id)
            SELECT new.app_id, new.id WHERE new.search_text IS NOT NULL;
        INSERT INTO message_search (rowid, text)
            SELECT last_insert_rowid(), new.search_text WHERE new.search_text IS NOT NULL;
    END""",
]


def upgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    with op.batch_alter_table("rooms") as batch:
        batch.add_column(
            sa.Column("message_count", sa.BigInteger(), nullable=False, server_default="0")
        )
    with op.batch_alter_table("room_members") as batch:
        batch.add_column(sa.Column("read_seq", sa.BigInteger(), nullable=False, server_default="0"))
    with op.batch_alter_table("messages") as batch:
        batch.add_column(sa.Column("client_msg_id", sa.String(64), nullable=True))
        batch.add_column(sa.Column("search_text", sa.Text(), nullable=True))
        batch.add_column(
            sa.Column("pinned", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch.add_column(
            sa.Column("hidden", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch.add_column(sa.Column("reactions", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("batch_id", sa.String(64), nullable=True))
        batch.add_column(sa.Column("reply_to", sa.String(24), nullable=True))
        batch.add_column(sa.Column("edited_at", sa.BigInteger(), nullable=True))
    # The defaults above only filled existing rows; the models set these on every insert.
    with op.batch_alter_table("messages") as batch:
        batch.alter_column("pinned", server_default=None)
        batch.alter_column("hidden", server_default=None)
    op.create_index(
        "ix_messages_room_updated", "messages", ["app_id", "room_id", "updated_at", "seq"]
    )
    op.create_index(
        "ix_messages_room_created", "messages", ["app_id", "room_id", "created_at", "seq"]
    )
    op.create_index("ix_messages_app_created", "messages", ["app_id", "created_at"])
    only_with_client_id = sa.text("client_msg_id IS NOT NULL")
    op.create_index(
        "uq_messages_client_msg_id",
        "messages",
        ["app_id", "room_id", "client_msg_id"],
        unique=True,
        sqlite_where=only_with_client_id,
        postgresql_where=only_with_client_id,
    )
    only_replies = sa.text("reply_to IS NOT NULL")
    op.create_index(
        "ix_messages_reply",
        "messages",
        ["app_id", "room_id", "reply_to"],
        sqlite_where=only_replies,
        postgresql_where=only_replies,
    )
    only_in_batches = sa.text("batch_id IS NOT NULL")
    op.create_index(
        "ix_messages_batch",
        "messages",
        ["app_id", "batch_id"],
        sqlite_where=only_in_batches,
        postgresql_where=only_in_batches,
    )
    op.execute(
        "UPDATE rooms SET message_count = (SELECT count(*) FROM messages m"
        " WHERE m.app_id = rooms.app_id AND m.room_id = rooms.id)"
    )
    op.execute(
        "UPDATE room_members SET read_seq = COALESCE((SELECT m.seq FROM messages m"
        " WHERE m.app_id = room_members.app_id AND m.id = room_members.last_read), 0)"
    )

    op.create_table(
        "message_mentions",
        sa.Column("app_id", sa.String(36), primary_key=True),
        sa.Column("room_id", sa.String(255), primary_key=True),
        sa.Column("user_id", sa.String(255), primary_key=True),
        sa.Column("seq", sa.BigInteger(), primary_key=True),
        sa.ForeignKeyConstraint(
            ["app_id", "room_id"], ["rooms.app_id", "rooms.id"], ondelete="CASCADE"
        ),
    )
    op.create_table(
        "hidden_messages",
        sa.Column("app_id", sa.String(36), primary_key=True),
        sa.Column("user_id", sa.String(255), primary_key=True),
        sa.Column("room_id", sa.String(255), primary_key=True),
        sa.Column("message_id", sa.String(24), primary_key=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["app_id", "room_id"], ["rooms.app_id", "rooms.id"], ondelete="CASCADE"
        ),
    )
    op.create_table(
        "message_batches",
        sa.Column(
            "app_id", sa.String(36), sa.ForeignKey("apps.id", ondelete="CASCADE"), primary_key=True
        ),
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("sender", sa.String(255), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("done", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
    )
    op.create_table(
        "files",
        sa.Column(
            "app_id", sa.String(36), sa.ForeignKey("apps.id", ondelete="CASCADE"), primary_key=True
        ),
        sa.Column("id", sa.String(24), primary_key=True),
        sa.Column("bucket", sa.String(100), nullable=False),
        sa.Column("filename", sa.Text(), nullable=False),
        sa.Column("mimetype", sa.String(255), nullable=False),
        sa.Column("length", sa.BigInteger(), nullable=False),
        sa.Column("md5", sa.String(32), nullable=False),
        sa.Column("uploader", sa.String(255), nullable=True),
        sa.Column("room_id", sa.String(255), nullable=True),
        sa.Column("extra", sa.JSON(), nullable=False),
        sa.Column("width", sa.Integer(), nullable=True),
        sa.Column("height", sa.Integer(), nullable=True),
        sa.Column("has_thumbnail", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
    )
    op.create_index("ix_files_room", "files", ["app_id", "room_id", "created_at"])

    if sqlite:
        for statement in SQLITE_SEARCH:
            op.execute(statement)
    else:
        op.execute(
            "CREATE INDEX ix_messages_search ON messages"
            " USING gin (to_tsvector('simple', search_text))"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for name in ("messages_search_insert", "messages_search_delete", "messages_search_update"):
            op.execute(f"DROP TRIGGER {name}")
        op.execute("DROP TABLE message_search")
        op.execute("DROP TABLE message_search_keys")
    else:
        op.execute("DROP INDEX ix_messages_search")
    op.drop_index("ix_files_room", "files")
    op.drop_table("files")
    op.drop_table("message_batches")
    op.drop_table("hidden_messages")
    op.drop_table("message_mentions")
    for name in ("ix_messages_batch", "ix_messages_app_created", "ix_messages_room_created"):
        op.drop_index(name, "messages")
    op.drop_index("ix_messages_room_updated", "messages")
    op.drop_index("uq_messages_client_msg_id", "messages")
    op.drop_index("ix_messages_reply", "messages")
    with op.batch_alter_table("messages") as batch:
        for column in (
            "edited_at",
            "reply_to",
            "batch_id",
            "reactions",
            "hidden",
            "pinned",
            "search_text",
            "client_msg_id",
        ):
            batch.drop_column(column)
    with op.batch_alter_table("room_members") as batch:
        batch.drop_column("read_seq")
    with op.batch_alter_table("rooms") as batch:
        batch.drop_column("message_count")
