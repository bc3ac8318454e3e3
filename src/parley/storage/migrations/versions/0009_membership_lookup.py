"""A user's rooms from indexes alone: what the real-time gateway asks at every connect.

The gateway reads the rooms of connecting users, directly or through their user groups
(``parley.gateway.memberships``): their groups, then the rooms of the users and groups.
Both lookups become index-only:

- ``ix_room_members_user_room`` on room_members (app_id, user_id, room_id): the rooms of a
  member without visiting the table (``ix_room_members_user_activity`` orders by activity
  for ``GET /rooms`` and would need a table read per room).
- ``ix_user_group_members_user`` widened with group_id: a user's groups likewise.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-29
"""

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_room_members_user_room", "room_members", ["app_id", "user_id", "room_id"])
    op.drop_index("ix_user_group_members_user", table_name="user_group_members")
    op.create_index(
        "ix_user_group_members_user", "user_group_members", ["app_id", "user_id", "group_id"]
    )


def downgrade() -> None:
    op.drop_index("ix_user_group_members_user", table_name="user_group_members")
    op.create_index("ix_user_group_members_user", "user_group_members", ["app_id", "user_id"])
    op.drop_index("ix_room_members_user_room", table_name="room_members")
