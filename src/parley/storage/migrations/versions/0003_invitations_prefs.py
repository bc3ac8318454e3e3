"""Invitations, room and user preferences, devices.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "room_invitations",
        sa.Column("app_id", sa.String(36), primary_key=True),
        sa.Column("room_id", sa.String(255), primary_key=True),
        sa.Column("invitee", sa.String(255), primary_key=True),
        sa.Column("inviter", sa.String(255), nullable=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["app_id", "room_id"], ["rooms.app_id", "rooms.id"], ondelete="CASCADE"
        ),
    )
    op.create_index("ix_room_invitations_invitee", "room_invitations", ["app_id", "invitee"])
    op.create_table(
        "room_prefs",
        sa.Column("app_id", sa.String(36), primary_key=True),
        sa.Column("user_id", sa.String(255), primary_key=True),
        sa.Column("grp", sa.String(255), primary_key=True),
        sa.Column("room_id", sa.String(255), primary_key=True),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
    )
    op.create_table(
        "user_prefs",
        sa.Column("app_id", sa.String(36), primary_key=True),
        sa.Column("user_id", sa.String(255), primary_key=True),
        sa.Column("key", sa.String(255), primary_key=True),
        sa.Column("data", sa.JSON(), nullable=True),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
    )
    op.create_table(
        "devices",
        sa.Column("app_id", sa.String(36), primary_key=True),
        sa.Column("user_id", sa.String(255), primary_key=True),
        sa.Column("device_id", sa.String(255), primary_key=True),
        sa.Column("type", sa.String(16), nullable=False),
        sa.Column("token", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("devices")
    op.drop_table("user_prefs")
    op.drop_table("room_prefs")
    op.drop_index("ix_room_invitations_invitee", "room_invitations")
    op.drop_table("room_invitations")
