"""Rooms, room members, room tags and messages.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rooms",
        sa.Column(
            "app_id", sa.String(36), sa.ForeignKey("apps.id", ondelete="CASCADE"), primary_key=True
        ),
        sa.Column("id", sa.String(255), primary_key=True),
        sa.Column("name", sa.Text(), nullable=True),
        sa.Column("cover", sa.Text(), nullable=True),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("room_type", sa.String(16), nullable=False),
        sa.Column("owner", sa.String(255), nullable=True),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("opening", sa.Integer(), nullable=False),
        sa.Column("invitation_required", sa.Boolean(), nullable=False),
        sa.Column("room_tags", sa.JSON(), nullable=False),
        sa.Column("webhook", sa.Text(), nullable=True),
        sa.Column("bot_mode", sa.Boolean(), nullable=False),
        sa.Column("bot_state", sa.String(255), nullable=True),
        sa.Column("encrypted", sa.Boolean(), nullable=False),
        sa.Column("ext_params", sa.Text(), nullable=True),
        sa.Column("last_seq", sa.BigInteger(), nullable=False),
        sa.Column("last_message_id", sa.String(24), nullable=True),
        sa.Column("last_message_at", sa.BigInteger(), nullable=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
    )
    op.create_table(
        "room_members",
        sa.Column("app_id", sa.String(36), primary_key=True),
        sa.Column("room_id", sa.String(255), primary_key=True),
        sa.Column("user_id", sa.String(255), primary_key=True),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("is_manager", sa.Boolean(), nullable=False),
        sa.Column("badge", sa.Integer(), nullable=False),
        sa.Column("mentioned", sa.Boolean(), nullable=False),
        sa.Column("last_read", sa.String(24), nullable=True),
        sa.Column("properties", sa.JSON(), nullable=False),
        sa.Column("joined_at", sa.BigInteger(), nullable=False),
        sa.Column("activity_at", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["app_id", "room_id"], ["rooms.app_id", "rooms.id"], ondelete="CASCADE"
        ),
    )
    op.create_index(
        "ix_room_members_user_activity", "room_members", ["app_id", "user_id", "activity_at"]
    )
    op.create_table(
        "room_tags",
        sa.Column("app_id", sa.String(36), primary_key=True),
        sa.Column("room_id", sa.String(255), primary_key=True),
        sa.Column("tag", sa.String(100), primary_key=True),
        sa.ForeignKeyConstraint(
            ["app_id", "room_id"], ["rooms.app_id", "rooms.id"], ondelete="CASCADE"
        ),
    )
    op.create_index("ix_room_tags_tag", "room_tags", ["app_id", "tag"])
    op.create_table(
        "messages",
        sa.Column("app_id", sa.String(36), primary_key=True),
        sa.Column("room_id", sa.String(255), primary_key=True),
        sa.Column("seq", sa.BigInteger(), primary_key=True),
        sa.Column("id", sa.String(24), nullable=False),
        sa.Column("sender", sa.String(255), nullable=True),
        sa.Column("message_type", sa.String(64), nullable=False),
        sa.Column("body", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["app_id", "room_id"], ["rooms.app_id", "rooms.id"], ondelete="CASCADE"
        ),
        sa.UniqueConstraint("app_id", "id", name="uq_messages_app_id"),
    )


def downgrade() -> None:
    op.drop_table("messages")
    op.drop_index("ix_room_tags_tag", "room_tags")
    op.drop_table("room_tags")
    op.drop_index("ix_room_members_user_activity", "room_members")
    op.drop_table("room_members")
    op.drop_table("rooms")
