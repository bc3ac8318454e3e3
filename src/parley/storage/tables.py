"""The database schema. Times are epoch milliseconds (the wire speaks them, and integers
compare the same on SQLite and PostgreSQL). Secrets never appear here in plain text:
keys and tokens are stored as SHA-256 digests, signing secrets as salts that only the
server's master secret turns into keys."""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    case,
    func,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Tables of SQLite's full-text index (migration 0005): built and queried with SQL of their
# own, outside these models.
SEARCH_INDEX_PREFIX = "message_search"


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[str]: JSON, list[Any]: JSON}


class AppRow(Base):
    """An application (tenant): its users, rooms and keys belong to it alone."""

    __tablename__ = "apps"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    allowed_origins: Mapped[list[str]] = mapped_column(default=list)
    token_salt: Mapped[str] = mapped_column(String(64))
    rate_limit_per_minute: Mapped[int | None] = mapped_column(Integer, default=None)
    created_at: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[int] = mapped_column(BigInteger)


class AppDomainRow(Base):
    """A host name an app is served on; one app per host name."""

    __tablename__ = "app_domains"

    domain: Mapped[str] = mapped_column(String(253), primary_key=True)
    app_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("apps.id", ondelete="CASCADE"), index=True
    )


class ApiKeyRow(Base):
    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    app_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("apps.id", ondelete="CASCADE"), index=True
    )
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    display: Mapped[str] = mapped_column(String(40))  # prefix…last four, safe to show
    created_at: Mapped[int] = mapped_column(BigInteger)
    # Set when the key is rotated with an overlap: it keeps working until then.
    expires_at: Mapped[int | None] = mapped_column(BigInteger, default=None)
    revoked_at: Mapped[int | None] = mapped_column(BigInteger, default=None)


class ClientKeyRow(Base):
    __tablename__ = "client_keys"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)  # the JWT's kid claim
    app_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("apps.id", ondelete="CASCADE"), index=True
    )
    salt: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[int] = mapped_column(BigInteger)
    revoked_at: Mapped[int | None] = mapped_column(BigInteger, default=None)
    # Set when the key is rotated with a grace period: it keeps working until then.
    grace_until: Mapped[int | None] = mapped_column(BigInteger, default=None)


class UserRow(Base):
    """An app's end user (IMKIT calls it a client)."""

    __tablename__ = "users"

    app_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("apps.id", ondelete="CASCADE"), primary_key=True
    )
    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    nickname: Mapped[str | None] = mapped_column(String(255), default=None)
    avatar_url: Mapped[str | None] = mapped_column(Text, default=None)
    description: Mapped[str | None] = mapped_column(Text, default=None)
    # Fields the customer adds beyond the known ones, returned verbatim.
    profile: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[int] = mapped_column(BigInteger)
    last_login_at: Mapped[int | None] = mapped_column(BigInteger, default=None)
    # When the user last had a live socket (written when its last socket closes).
    last_active_at: Mapped[int | None] = mapped_column(BigInteger, default=None)

    __table_args__ = (Index("ix_users_app_nickname", "app_id", "nickname"),)


class UserTokenRow(Base):
    __tablename__ = "user_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    app_id: Mapped[str] = mapped_column(String(36))
    user_id: Mapped[str] = mapped_column(String(255))
    token_hash: Mapped[str] = mapped_column(String(64))
    issued: Mapped[bool] = mapped_column(Boolean)  # True: a JWT minted by Parley
    device_id: Mapped[str | None] = mapped_column(String(255), default=None)
    expires_at: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[int] = mapped_column(BigInteger)

    __table_args__ = (
        UniqueConstraint("app_id", "token_hash", name="uq_user_tokens_app_hash"),
        ForeignKeyConstraint(
            ["app_id", "user_id"], ["users.app_id", "users.id"], ondelete="CASCADE"
        ),
        Index("ix_user_tokens_user", "app_id", "user_id"),
    )


class AuthChangeRow(Base):
    """Append-only log of revocations, polled by every node so that a revocation made by
    another process (the CLI, another node) is honoured even if a broker message is lost."""

    __tablename__ = "auth_changes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    app_id: Mapped[str] = mapped_column(String(36))
    kind: Mapped[str] = mapped_column(String(16))  # "app" | "user"
    subject: Mapped[str] = mapped_column(String(255), default="")
    at: Mapped[int] = mapped_column(BigInteger, index=True)


class KeyUsageRow(Base):
    """Per key and per UTC day: requests, rejections by error code, Origins seen."""

    __tablename__ = "key_usage"

    key_kind: Mapped[str] = mapped_column(String(8), primary_key=True)  # "api" | "client"
    key_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    day: Mapped[str] = mapped_column(String(10), primary_key=True)  # YYYY-MM-DD
    app_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("apps.id", ondelete="CASCADE"), index=True
    )
    requests: Mapped[int] = mapped_column(BigInteger, default=0)
    rejections: Mapped[dict[str, Any]] = mapped_column(default=dict)
    origins: Mapped[list[str]] = mapped_column(default=list)
    last_used_at: Mapped[int] = mapped_column(BigInteger, default=0)


class SocketPeakRow(Base):
    """Per application and UTC day: the most sockets it had open at once, on all nodes."""

    __tablename__ = "socket_peaks"

    app_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("apps.id", ondelete="CASCADE"), primary_key=True
    )
    day: Mapped[str] = mapped_column(String(10), primary_key=True)  # YYYY-MM-DD
    peak: Mapped[int] = mapped_column(BigInteger)


class RoomRow(Base):
    """A chat room. ``last_seq`` is the per-room message sequence counter; a message gets
    ``last_seq + 1`` in the transaction that stores it."""

    __tablename__ = "rooms"

    app_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("apps.id", ondelete="CASCADE"), primary_key=True
    )
    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    name: Mapped[str | None] = mapped_column(Text, default=None)
    cover: Mapped[str | None] = mapped_column(Text, default=None)
    description: Mapped[str | None] = mapped_column(Text, default=None)
    room_type: Mapped[str] = mapped_column(String(16), default="group")
    owner: Mapped[str | None] = mapped_column(String(255), default=None)
    status: Mapped[int] = mapped_column(Integer, default=1)  # 0: frozen
    opening: Mapped[int] = mapped_column(Integer, default=1)  # 0: closed to self-join
    invitation_required: Mapped[bool] = mapped_column(Boolean, default=False)
    room_tags: Mapped[list[str]] = mapped_column(default=list)
    webhook: Mapped[str | None] = mapped_column(Text, default=None)
    bot_mode: Mapped[bool] = mapped_column(Boolean, default=False)
    bot_state: Mapped[str | None] = mapped_column(String(255), default=None)
    encrypted: Mapped[bool] = mapped_column(Boolean, default=False)
    ext_params: Mapped[str | None] = mapped_column(Text, default=None)
    last_seq: Mapped[int] = mapped_column(BigInteger, default=0)
    last_message_id: Mapped[str | None] = mapped_column(String(24), default=None)
    last_message_at: Mapped[int | None] = mapped_column(BigInteger, default=None)
    message_count: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    created_at: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[int] = mapped_column(BigInteger)


class RoomMemberRow(Base):
    """A member of a room, with its read state and properties. What a send changes stays
    on the room (its last activity, migration 0011; its message count, migration 0012):
    a send rewrites its sender's membership, whatever the number of members.

    Unread count: the room's ``message_count`` minus the member's ``seen``, the messages
    of the room the member has read or sent (``UNREAD``)."""

    __tablename__ = "room_members"

    app_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    room_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    role: Mapped[str] = mapped_column(String(16), default="member")  # "admin" | "member"
    is_manager: Mapped[bool] = mapped_column(Boolean, default=False)
    # Of the room's messages, how many the member has read or sent: reading sets it to
    # the room's count less the unread ones, each own message adds one, deleting a
    # message takes one off those who had counted it (see migration 0012).
    seen: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    mentioned: Mapped[bool] = mapped_column(Boolean, default=False)
    last_read: Mapped[str | None] = mapped_column(String(24), default=None)
    # The sequence number read up to: messages after it not sent by the member are unread.
    read_seq: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    properties: Mapped[dict[str, Any]] = mapped_column(default=dict)
    joined_at: Mapped[int] = mapped_column(BigInteger)

    __table_args__ = (
        ForeignKeyConstraint(
            ["app_id", "room_id"], ["rooms.app_id", "rooms.id"], ondelete="CASCADE"
        ),
        # A member's rooms from the index alone (the gateway reads them at every connect).
        Index("ix_room_members_user_room", "app_id", "user_id", "room_id"),
    )


# A membership's room, for joins; and a room's last activity, which orders room lists.
MEMBERSHIP_ROOM = (RoomRow.app_id == RoomMemberRow.app_id) & (RoomRow.id == RoomMemberRow.room_id)
ROOM_ACTIVITY = func.coalesce(RoomRow.last_message_at, RoomRow.created_at)
# A membership's unread count, with its room joined (never below zero).
UNREAD = case(
    (RoomRow.message_count > RoomMemberRow.seen, RoomRow.message_count - RoomMemberRow.seen),
    else_=0,
)


def unread_of(room: RoomRow, member: RoomMemberRow) -> int:
    """``UNREAD`` for rows at hand."""
    return max(0, room.message_count - member.seen)


class RoomTagRow(Base):
    """A room's tags as rows (the room also keeps them in order in ``room_tags``), so that
    filtering rooms by tag is an index lookup on any database."""

    __tablename__ = "room_tags"

    app_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    room_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    tag: Mapped[str] = mapped_column(String(100), primary_key=True)

    __table_args__ = (
        ForeignKeyConstraint(
            ["app_id", "room_id"], ["rooms.app_id", "rooms.id"], ondelete="CASCADE"
        ),
        Index("ix_room_tags_tag", "app_id", "tag"),
    )


class MessageRow(Base):
    """A message of a room. ``seq`` is gap-free per room as assigned; ``body`` holds every
    wire field beyond the indexed ones, verbatim. ``client_msg_id`` is the sender's own id
    for the message: a retry carrying it finds the stored message instead of adding one.
    ``search_text`` is what full-text search indexes (migration 0005 builds the index:
    FTS5 on SQLite, a GIN tsvector index on PostgreSQL)."""

    __tablename__ = "messages"

    app_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    room_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    id: Mapped[str] = mapped_column(String(24))
    sender: Mapped[str | None] = mapped_column(String(255), default=None)
    message_type: Mapped[str] = mapped_column(String(64))
    body: Mapped[dict[str, Any]] = mapped_column(default=dict)
    client_msg_id: Mapped[str | None] = mapped_column(String(64), default=None)
    search_text: Mapped[str | None] = mapped_column(Text, default=None)
    pinned: Mapped[bool] = mapped_column(Boolean, default=False)
    hidden: Mapped[bool] = mapped_column(Boolean, default=False)
    reactions: Mapped[list[Any] | None] = mapped_column(JSON, default=None)
    batch_id: Mapped[str | None] = mapped_column(String(64), default=None)
    # The message this one quotes (``reply``): a recall, delete or hide of that message
    # rewrites the quote.
    reply_to: Mapped[str | None] = mapped_column(String(24), default=None)
    edited_at: Mapped[int | None] = mapped_column(BigInteger, default=None)
    created_at: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[int] = mapped_column(BigInteger)

    __table_args__ = (
        ForeignKeyConstraint(
            ["app_id", "room_id"], ["rooms.app_id", "rooms.id"], ondelete="CASCADE"
        ),
        UniqueConstraint("app_id", "id", name="uq_messages_app_id"),
        # Most messages carry neither a client id nor a batch: partial indexes keep the
        # cost of a send's insert down to the rows that need them.
        Index(
            "uq_messages_client_msg_id",
            "app_id",
            "room_id",
            "client_msg_id",
            unique=True,
            sqlite_where=text("client_msg_id IS NOT NULL"),
            postgresql_where=text("client_msg_id IS NOT NULL"),
        ),
        Index("ix_messages_room_updated", "app_id", "room_id", "updated_at", "seq"),
        Index("ix_messages_room_created", "app_id", "room_id", "created_at", "seq"),
        Index("ix_messages_app_created", "app_id", "created_at"),
        Index(
            "ix_messages_reply",
            "app_id",
            "room_id",
            "reply_to",
            sqlite_where=text("reply_to IS NOT NULL"),
            postgresql_where=text("reply_to IS NOT NULL"),
        ),
        Index(
            "ix_messages_batch",
            "app_id",
            "batch_id",
            sqlite_where=text("batch_id IS NOT NULL"),
            postgresql_where=text("batch_id IS NOT NULL"),
        ),
    )


class MentionRow(Base):
    """A member mentioned by a message: the room shows ``isMentioned`` while one of these
    lies after the member's ``read_seq``."""

    __tablename__ = "message_mentions"

    app_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    room_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True)

    __table_args__ = (
        ForeignKeyConstraint(
            ["app_id", "room_id"], ["rooms.app_id", "rooms.id"], ondelete="CASCADE"
        ),
    )


class HiddenMessageRow(Base):
    """A message one user removed from their own view ("delete for me")."""

    __tablename__ = "hidden_messages"

    app_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    room_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    message_id: Mapped[str] = mapped_column(String(24), primary_key=True)
    created_at: Mapped[int] = mapped_column(BigInteger)

    __table_args__ = (
        ForeignKeyConstraint(
            ["app_id", "room_id"], ["rooms.app_id", "rooms.id"], ondelete="CASCADE"
        ),
    )


class MessageBatchRow(Base):
    """A queued mass send (``POST /messages/batch``): what to send and how far it got, so
    that a restart resumes it instead of losing it."""

    __tablename__ = "message_batches"

    app_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("apps.id", ondelete="CASCADE"), primary_key=True
    )
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    sender: Mapped[str] = mapped_column(String(255))
    spec: Mapped[dict[str, Any]] = mapped_column(default=dict)
    total: Mapped[int] = mapped_column(Integer)
    done: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[str] = mapped_column(String(16), default="queued")
    created_at: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[int] = mapped_column(BigInteger)


class FileRow(Base):
    """An uploaded file's metadata; its bytes live in the file store under ``app_id/id``."""

    __tablename__ = "files"

    app_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("apps.id", ondelete="CASCADE"), primary_key=True
    )
    id: Mapped[str] = mapped_column(String(24), primary_key=True)
    bucket: Mapped[str] = mapped_column(String(100))
    filename: Mapped[str] = mapped_column(Text)
    mimetype: Mapped[str] = mapped_column(String(255))
    length: Mapped[int] = mapped_column(BigInteger)
    md5: Mapped[str] = mapped_column(String(32))
    uploader: Mapped[str | None] = mapped_column(String(255), default=None)
    room_id: Mapped[str | None] = mapped_column(String(255), default=None)
    extra: Mapped[dict[str, Any]] = mapped_column(default=dict)
    width: Mapped[int | None] = mapped_column(Integer, default=None)
    height: Mapped[int | None] = mapped_column(Integer, default=None)
    has_thumbnail: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[int] = mapped_column(BigInteger)

    __table_args__ = (Index("ix_files_room", "app_id", "room_id", "created_at"),)


class InvitationRow(Base):
    """A pending invitation to a room that requires one; joining consumes it."""

    __tablename__ = "room_invitations"

    app_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    room_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    invitee: Mapped[str] = mapped_column(String(255), primary_key=True)
    inviter: Mapped[str | None] = mapped_column(String(255), default=None)
    created_at: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[int] = mapped_column(BigInteger)

    __table_args__ = (
        ForeignKeyConstraint(
            ["app_id", "room_id"], ["rooms.app_id", "rooms.id"], ondelete="CASCADE"
        ),
        Index("ix_room_invitations_invitee", "app_id", "invitee"),
    )


class RoomPrefRow(Base):
    """One user's preferences for one room (``grp`` "" for the user's own, or a user
    group's id for the per-group form)."""

    __tablename__ = "room_prefs"

    app_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    grp: Mapped[str] = mapped_column(String(255), primary_key=True)
    room_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)
    updated_at: Mapped[int] = mapped_column(BigInteger)


class UserPrefRow(Base):
    """``/me/pref/{key}``: any JSON a client app keeps per user."""

    __tablename__ = "user_prefs"

    app_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    data: Mapped[Any] = mapped_column(JSON, nullable=True)
    updated_at: Mapped[int] = mapped_column(BigInteger)


class DeviceRow(Base):
    """A device's push token (``/me/subscribe``), kept for the push feature."""

    __tablename__ = "devices"

    app_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    device_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    type: Mapped[str] = mapped_column(String(16))
    token: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[int] = mapped_column(BigInteger)


class GroupRow(Base):
    """A user group: a virtual user whose id can stand in a room's members, giving every
    member of the group access to the room. Group ids share the users' id space."""

    __tablename__ = "user_groups"

    app_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("apps.id", ondelete="CASCADE"), primary_key=True
    )
    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    nickname: Mapped[str] = mapped_column(String(255))
    avatar_url: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[int] = mapped_column(BigInteger)


class GroupMemberRow(Base):
    __tablename__ = "user_group_members"

    app_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    group_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(255), primary_key=True)

    __table_args__ = (
        ForeignKeyConstraint(
            ["app_id", "group_id"], ["user_groups.app_id", "user_groups.id"], ondelete="CASCADE"
        ),
        Index("ix_user_group_members_user", "app_id", "user_id", "group_id"),
    )


class OperatorRow(Base):
    """A person who signs in to the dashboard (/dashboard) to manage applications.
    ``password_hash`` is an argon2id PHC string; ``email`` is stored lower-cased."""

    __tablename__ = "operators"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[int] = mapped_column(BigInteger)
    password_changed_at: Mapped[int] = mapped_column(BigInteger)


class OperatorSessionRow(Base):
    """A signed-in dashboard session. The cookie holds a random id; only its SHA-256
    digest is stored, so any node can check a cookie and a copy of the table opens none."""

    __tablename__ = "operator_sessions"

    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    operator_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("operators.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[int] = mapped_column(BigInteger)
    expires_at: Mapped[int] = mapped_column(BigInteger, index=True)


class OperatorAppRow(Base):
    """Which operator owns an application (an app created with the CLI has none until
    one is assigned), with the environment label the dashboard shows."""

    __tablename__ = "operator_apps"

    app_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("apps.id", ondelete="CASCADE"), primary_key=True
    )
    operator_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("operators.id", ondelete="CASCADE"), index=True
    )
    environment: Mapped[str] = mapped_column(String(32), default="production")
    created_at: Mapped[int] = mapped_column(BigInteger)
