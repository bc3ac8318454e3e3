"""User groups.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "user_groups",
        sa.Column(
            "app_id", sa.String(36), sa.ForeignKey("apps.id", ondelete="CASCADE"), primary_key=True
        ),
        sa.Column("id", sa.String(255), primary_key=True),
        sa.Column("nickname", sa.String(255), nullable=False),
        sa.Column("avatar_url", sa.Text(), nullable=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
    )
    op.create_table(
        "user_group_members",
        sa.Column("app_id", sa.String(36), primary_key=True),
        sa.Column("group_id", sa.String(255), primary_key=True),
        sa.Column("user_id", sa.String(255), primary_key=True),
        sa.ForeignKeyConstraint(
            ["app_id", "group_id"],
            ["user_groups.app_id", "user_groups.id"],
            ondelete="CASCADE",
        ),
    )
    op.create_index("ix_user_group_members_user", "user_group_members", ["app_id", "user_id"])


def downgrade() -> None:
    op.drop_index("ix_user_group_members_user", "user_group_members")
    op.drop_table("user_group_members")
    op.drop_table("user_groups")
