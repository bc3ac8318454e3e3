"""Which credential may call which operation: the one permission table.

Every route the app registers must have an entry here; ``create_app`` refuses to start
otherwise, and ``tests/api/test_permissions.py`` walks every route against the table.
The table follows the IMKIT contract's auth column: admin operations take the API Key
only; user operations take a Client Key plus a user token (an API Key acts as admin).
"""

from __future__ import annotations

from parley.services.auth import Access

PUBLIC, ADMIN, USER, CLIENT_KEY = Access.PUBLIC, Access.ADMIN, Access.USER, Access.CLIENT_KEY

PERMISSIONS: dict[tuple[str, str], Access] = {
    # Operations and documentation
    ("GET", "/health"): PUBLIC,
    ("GET", "/openapi.json"): PUBLIC,
    ("GET", "/docs"): PUBLIC,
    ("GET", "/docs/oauth2-redirect"): PUBLIC,
    ("GET", "/redoc"): PUBLIC,
    # Users and tokens (contract §3.1)
    ("POST", "/admin/clients"): ADMIN,
    ("POST", "/admin/clients/list"): ADMIN,
    ("GET", "/admin/clients"): ADMIN,
    ("GET", "/admin/clients/{client_id}"): ADMIN,
    ("PUT", "/admin/clients/{client_id}/token"): ADMIN,
    ("DELETE", "/admin/clients/{client_id}/token"): ADMIN,
    # User groups (contract §3.3)
    ("GET", "/admin/connection-count"): ADMIN,
    ("POST", "/admin/groups"): ADMIN,
    ("GET", "/admin/groups"): ADMIN,
    # The current user (contract §3.2)
    ("GET", "/me"): USER,
    ("POST", "/me"): USER,
    # Rooms (contract §3.4)
    ("POST", "/rooms"): ADMIN,
    ("POST", "/rooms/createAndJoin"): USER,
    ("GET", "/rooms"): USER,
    ("GET", "/rooms/ids"): USER,
    ("GET", "/rooms/quitted"): USER,
    ("GET", "/rooms/{room_id}"): USER,
    ("GET", "/rooms/{room_id}/exists"): USER,
    ("PUT", "/rooms/{room_id}"): USER,
    ("DELETE", "/rooms/{room_id}"): USER,
    ("POST", "/rooms/{room_id}/join"): USER,
    # Members and read state (contract §3.5)
    ("POST", "/rooms/{room_id}/members"): USER,
    ("POST", "/rooms/{room_id}/members/{invitee}"): USER,
    ("POST", "/rooms/{room_id}/delete/members"): USER,
    ("PUT", "/rooms/{room_id}/member/{client_id}"): USER,
    ("PUT", "/rooms/{room_id}/lastRead"): USER,
    ("POST", "/rooms/{room_id}/typing"): USER,
    # Invitations (contract §3.5)
    ("GET", "/rooms/invitations"): USER,
    ("GET", "/rooms/{room_id}/invitations"): USER,
    ("POST", "/rooms/{room_id}/delete/invitations"): USER,
    ("DELETE", "/rooms/{room_id}/invitations/{invitee}"): USER,
    ("DELETE", "/rooms/{room_id}/invitations"): USER,
    # Preferences (contract §3.6)
    ("POST", "/roomPrefs/{room_id}"): USER,
    ("GET", "/roomPrefs"): USER,
    ("DELETE", "/roomPrefs/{room_id}/{key}"): USER,
    ("POST", "/roomPrefs/{room_id}/group/{group}"): USER,
    ("GET", "/roomPrefs/group/{group}"): USER,
    ("DELETE", "/roomPrefs/{room_id}/group/{group}/{key}"): USER,
    ("GET", "/me/pref"): USER,
    ("GET", "/me/prefs"): USER,
    ("POST", "/me/pref/{key}"): USER,
    ("DELETE", "/me/pref/{key}"): USER,
    # The current user's devices and sessions (contract §3.2)
    ("POST", "/me/mute/{room_id}"): USER,
    ("DELETE", "/me/mute/{room_id}"): USER,
    ("POST", "/me/notification/enable"): USER,
    ("POST", "/me/notification/disable"): USER,
    ("POST", "/me/subscribe"): USER,
    ("POST", "/me/unsubscribe"): USER,
    ("POST", "/me/logout"): USER,
    ("POST", "/me/logout-others"): USER,
    # Messages (contract §3.7)
    ("POST", "/rooms/{room_id}/message"): USER,
    ("POST", "/messages"): ADMIN,
    # The web SDKs' "mass texting" sends batches with a Client Key and token (contract §6.3)
    ("POST", "/messages/batch"): USER,
    ("GET", "/messages/batch"): USER,
    ("DELETE", "/rooms/{room_id}/messages/{message_id}"): USER,
    ("POST", "/messages/user-delete"): USER,
    ("POST", "/messages/user-delete/all-in-room"): USER,
    ("GET", "/messages/user-delete"): USER,
    ("POST", "/messages/{message_id}/pin"): USER,
    ("DELETE", "/messages/{message_id}/pin"): USER,
    ("POST", "/messages/{message_id}/reaction"): USER,
    ("DELETE", "/messages/{message_id}/reaction"): USER,
    ("POST", "/messages/{message_id}/hidden"): USER,
    ("DELETE", "/messages/{message_id}/hidden"): USER,
    ("POST", "/messages/hide-by-sender-in-room"): USER,
    ("POST", "/messages/unhide-by-sender-in-room"): USER,
    ("GET", "/rooms/{room_id}/messages/v3"): USER,
    ("GET", "/rooms/{room_id}/messages"): USER,
    ("GET", "/rooms/{room_id}/pined-messages"): USER,
    ("GET", "/rooms/{room_id}/messages/pined-messages"): USER,
    ("GET", "/rooms/{room_id}/messages/{message_id}"): USER,
    ("GET", "/rooms/{room_id}/count"): USER,
    ("GET", "/messages/recent"): USER,
    ("GET", "/admin/messages"): ADMIN,
    # Unread counts (contract §3.8)
    ("GET", "/me/badge"): USER,
    ("POST", "/badges/byRoomTags"): USER,
    ("POST", "/badges/byRoomTagsAndTime"): USER,
    ("POST", "/badges"): CLIENT_KEY,
    # Search (contract §3.7)
    ("POST", "/search"): USER,
    # Files (contract §3.14)
    ("POST", "/files/stats"): USER,
    ("POST", "/files/{bucket}"): USER,
    ("GET", "/files/{bucket}/{file_id}"): USER,
    ("GET", "/files/{bucket}/{file_id}/thumbnail"): USER,
    ("GET", "/files/{bucket}/{file_id}/metadata"): USER,
}

# USER operations that a request without any credential may also make with a valid
# signed URL (from ``?signedUrlOnly=1``): browsers load files through ``<img src>``, which
# sends no headers. The signature names the app, the file and an expiry; a request that
# does carry credentials is judged by them alone.
SIGNED_URL_ROUTES: frozenset[tuple[str, str]] = frozenset(
    {
        ("GET", "/files/{bucket}/{file_id}"),
        ("GET", "/files/{bucket}/{file_id}/thumbnail"),
    }
)


def access_for(method: str, path: str) -> Access | None:
    if method == "HEAD":
        method = "GET"
    return PERMISSIONS.get((method, path))
