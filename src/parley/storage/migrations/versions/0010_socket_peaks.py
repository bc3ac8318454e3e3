"""The most sockets each application had open at once, per UTC day, on all nodes together.

The dashboard's usage page showed the peak a node had seen since it started, which a
restart forgets and which says nothing of the other nodes. Presence now samples the
app-wide count every few seconds and keeps each day's highest here.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "socket_peaks",
        sa.Column(
            "app_id",
            sa.String(36),
            sa.ForeignKey("apps.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("day", sa.String(10), primary_key=True),
        sa.Column("peak", sa.BigInteger(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("socket_peaks")
