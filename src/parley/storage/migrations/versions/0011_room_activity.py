"""A room's activity is kept once, on the room, not copied onto every membership.

Every message used to set ``activity_at`` on each of its room's memberships, so that a
user's rooms could be listed newest first from an index on the membership alone. The
price was paid on every send: one row and one index entry rewritten per member (a
1,000-member room rewrote 1,000 index entries per message, about four times the cost of
bumping the unread counters alone, measured on SQLite), and on PostgreSQL a changed
indexed column rules out heap-only updates. A room list is read far less often than
messages are sent; it now orders by the room's own last activity through a join, at a
cost that grows with the rooms of that one user.

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_room_members_user_activity", table_name="room_members")
    with op.batch_alter_table("room_members") as batch:
        batch.drop_column("activity_at")


def downgrade() -> None:
    with op.batch_alter_table("room_members") as batch:
        batch.add_column(sa.Column("activity_at", sa.BigInteger(), nullable=True))
    op.execute(
        "UPDATE room_members SET activity_at = (SELECT COALESCE(r.last_message_at, r.created_at)"
        " FROM rooms r WHERE r.app_id = room_members.app_id AND r.id = room_members.room_id)"
    )
    with op.batch_alter_table("room_members") as batch:
        batch.alter_column("activity_at", existing_type=sa.BigInteger(), nullable=False)
    op.create_index(
        "ix_room_members_user_activity", "room_members", ["app_id", "user_id", "activity_at"]
    )
