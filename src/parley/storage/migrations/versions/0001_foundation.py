"""Foundation: applications, keys, users, tokens, the change log and key usage.

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "apps",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("allowed_origins", sa.JSON(), nullable=False),
        sa.Column("token_salt", sa.String(64), nullable=False),
        sa.Column("rate_limit_per_minute", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
    )
    op.create_table(
        "app_domains",
        sa.Column("domain", sa.String(253), primary_key=True),
        sa.Column(
            "app_id", sa.String(36), sa.ForeignKey("apps.id", ondelete="CASCADE"), nullable=False
        ),
    )
    op.create_index("ix_app_domains_app_id", "app_domains", ["app_id"])
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column(
            "app_id", sa.String(36), sa.ForeignKey("apps.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("display", sa.String(40), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", sa.BigInteger(), nullable=True),
        sa.Column("revoked_at", sa.BigInteger(), nullable=True),
    )
    op.create_index("ix_api_keys_app_id", "api_keys", ["app_id"])
    op.create_table(
        "client_keys",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column(
            "app_id", sa.String(36), sa.ForeignKey("apps.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("salt", sa.String(64), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("revoked_at", sa.BigInteger(), nullable=True),
        sa.Column("grace_until", sa.BigInteger(), nullable=True),
    )
    op.create_index("ix_client_keys_app_id", "client_keys", ["app_id"])
    op.create_table(
        "users",
        sa.Column(
            "app_id", sa.String(36), sa.ForeignKey("apps.id", ondelete="CASCADE"), primary_key=True
        ),
        sa.Column("id", sa.String(255), primary_key=True),
        sa.Column("nickname", sa.String(255), nullable=True),
        sa.Column("avatar_url", sa.Text(), nullable=True),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("profile", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.Column("last_login_at", sa.BigInteger(), nullable=True),
    )
    op.create_index("ix_users_app_nickname", "users", ["app_id", "nickname"])
    op.create_table(
        "user_tokens",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("app_id", sa.String(36), nullable=False),
        sa.Column("user_id", sa.String(255), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("issued", sa.Boolean(), nullable=False),
        sa.Column("device_id", sa.String(255), nullable=True),
        sa.Column("expires_at", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.UniqueConstraint("app_id", "token_hash", name="uq_user_tokens_app_hash"),
        sa.ForeignKeyConstraint(
            ["app_id", "user_id"], ["users.app_id", "users.id"], ondelete="CASCADE"
        ),
    )
    op.create_index("ix_user_tokens_user", "user_tokens", ["app_id", "user_id"])
    op.create_table(
        "auth_changes",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("app_id", sa.String(36), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("subject", sa.String(255), nullable=False),
        sa.Column("at", sa.BigInteger(), nullable=False),
    )
    op.create_index("ix_auth_changes_at", "auth_changes", ["at"])
    op.create_table(
        "key_usage",
        sa.Column("key_kind", sa.String(8), primary_key=True),
        sa.Column("key_id", sa.String(32), primary_key=True),
        sa.Column("day", sa.String(10), primary_key=True),
        sa.Column(
            "app_id", sa.String(36), sa.ForeignKey("apps.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("requests", sa.BigInteger(), nullable=False),
        sa.Column("rejections", sa.JSON(), nullable=False),
        sa.Column("origins", sa.JSON(), nullable=False),
        sa.Column("last_used_at", sa.BigInteger(), nullable=False),
    )
    op.create_index("ix_key_usage_app_id", "key_usage", ["app_id"])


def downgrade() -> None:
    for table in (
        "key_usage",
        "auth_changes",
        "user_tokens",
        "users",
        "client_keys",
        "api_keys",
        "app_domains",
        "apps",
    ):
        op.drop_table(table)
