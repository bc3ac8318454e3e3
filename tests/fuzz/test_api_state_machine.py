"""The REST API against a model, through a live server: random sequences of users
(created, given tokens, their tokens revoked), rooms (created, deleted, members added
and removed), messages, read marks and the app's Client Key (revoked, generated again).

The model knows who is in which room, each room's messages in order, each member's unread
count, and which credentials are live. After every step the server must agree:

- membership decides visibility: a member reads the room, its messages and its unread
  count; anyone else gets 403 (404 once the room is gone) and no badge from it;
- each room's messages carry the sequence numbers 1..n, without gaps;
- a revoked credential (a user token, a Client Key) never works again;
- each user's badge is the model's unread count.

Users are never deleted: the API has no such route (contract §3.1); revoking all of a
user's tokens is what shuts one out. The Client Key has no API route either (contract
§2.1: revoke and regenerate in the dashboard): the machine calls the key service, the
same code the dashboard and the CLI call.

``PARLEY_FUZZ_EXAMPLES=N`` runs N random runs instead of the short fixed set.
"""

from __future__ import annotations

import secrets
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, ClassVar

import httpx
import pytest
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from tests.conftest import Server, ok
from tests.fuzz.budget import fuzz_settings, is_full_run

SHORT_RUNS = 6
STEPS = 15
USERS = ("ann", "ben", "cat", "dan")
ROOMS = ("r1", "r2", "r3")
REFUSED = (401, 403)  # a dead credential: 401 for a token, 403 for a Client Key

users = st.sampled_from(USERS)
rooms = st.sampled_from(ROOMS)
some_users = st.lists(users, min_size=1, max_size=3, unique=True)
ACTS = ("send", "send", "send as admin", "read")
# Any text JSON can carry, but NUL (refused with a 400 on purpose).
texts = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), min_size=1, max_size=20)
# Outcomes every run of the test must have seen at least once.
OUTCOMES = (
    "send: stored",
    "lastRead: marked",
    "room: refused to a non-member",
    "room: seen by a member",
    "dead token: refused",
    "dead Client Key: refused",
)


@dataclass
class Message:
    id: str
    sender: str


@dataclass
class Room:
    members: set[str]
    messages: list[Message] = field(default_factory=list)
    unread: dict[str, int] = field(default_factory=dict)

    def add(self, user: str) -> None:
        if user not in self.members:
            self.members.add(user)
            self.unread[user] = 0

    def remove(self, user: str) -> None:
        self.members.discard(user)
        self.unread.pop(user, None)

    def append(self, message: Message) -> None:
        self.messages.append(message)
        for member in self.members:
            if member != message.sender:
                self.unread[member] += 1

    def read_up_to(self, user: str, index: int) -> None:
        """As ``PUT lastRead`` defines it: unread are the later messages of others."""
        self.unread[user] = sum(1 for m in self.messages[index + 1 :] if m.sender != user)


def refused(response: httpx.Response) -> bool:
    return response.status_code in REFUSED


class ApiMachine(RuleBasedStateMachine):
    server: ClassVar[Server]
    # What the runs did, over all of them: a machine whose every send was refused would
    # pass while proving little, so the test checks that each outcome happened.
    tally: ClassVar[Counter[str]] = Counter()

    def __init__(self) -> None:
        super().__init__()
        self.http = self.server.client()
        self.app_id = ""
        self.admin: dict[str, str] = {}
        self.client_key: str | None = None  # the live one
        self.dead_keys: list[str] = []
        self.tokens: dict[str, str] = {}  # user → live token
        self.dead_tokens: list[tuple[str, str]] = []  # (user, token)
        self.created: set[str] = set()
        self.rooms: dict[str, Room] = {}
        self.gone: set[str] = set()  # rooms deleted
        self.touched: str | None = None  # the room of the last step

    # -- requests ----------------------------------------------------------------------

    def as_admin(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return self.checked(self.http.request(method, path, headers=self.admin, **kwargs))

    def as_user(
        self,
        user: str,
        method: str,
        path: str,
        *,
        token: str | None = None,
        key: str = "",
        **kw: Any,
    ) -> httpx.Response:
        headers = {
            "IM-CLIENT-KEY": key or self.client_key or "",
            "IM-Authorization": token or self.tokens.get(user, ""),
        }
        return self.checked(self.http.request(method, path, headers=headers, **kw))

    @staticmethod
    def checked(response: httpx.Response) -> httpx.Response:
        assert response.status_code < 500, (response.request.url, response.text)
        return response

    def note(self, what: str) -> None:
        self.tally[what] += 1

    def can_call(self, user: str) -> bool:
        return self.client_key is not None and user in self.tokens

    # -- setup -------------------------------------------------------------------------

    @initialize()
    def a_fresh_app(self) -> None:
        keys = self.server.new_app("state-machine")
        # Hundreds of calls a run: the app's rate limit is not under test.
        self.server.call(lambda s: s.apps.update(keys.id, rate_limit_per_minute=10**9))
        self.app_id = keys.id
        self.admin = {"IM-API-KEY": keys.api_key}
        self.client_key = keys.client_key
        # Three users with tokens and three rooms of two: most steps then reach a member.
        for user in USERS[:3]:
            self.give_token(user, bound=False)
        for room, members in zip(ROOMS, (USERS[:2], USERS[1:3], USERS[:3:2]), strict=True):
            self.create_room_of(room, list(members))
        # A dead token and a dead Client Key from the start: every step checks them.
        self.give_token(USERS[2], bound=True)
        self.replace_client_key(USERS[0], in_one_step=False)

    def teardown(self) -> None:
        self.http.close()

    # -- users and tokens ------------------------------------------------------------------

    @rule(user=users, how=st.sampled_from(["issue", "bind", "revoke"]))
    def change_token(self, user: str, how: str) -> None:
        """Give the user a new token (creating the user if need be), or revoke all its
        tokens (what shuts a user out: users cannot be deleted)."""
        if how == "revoke" and user in self.created:
            ok(self.as_admin("DELETE", f"/admin/clients/{user}/token"))
            self.retire_tokens(user)
        else:
            self.give_token(user, bound=how == "bind")

    def give_token(self, user: str, bound: bool) -> None:
        """Creates the user if need be. Its new token, issued by the server or chosen by
        the customer's backend (``bound``), replaces its earlier ones."""
        if bound and user in self.created:
            token = "bound-" + secrets.token_hex(8)
            body = {"token": token, "expirationDate": "2099-01-01T00:00:00Z"}
            ok(self.as_admin("PUT", f"/admin/clients/{user}/token", json=body))
        else:
            body = {"_id": user, "issueAccessToken": True}
            token = ok(self.as_admin("POST", "/admin/clients", json=body))["token"]
        self.retire_tokens(user)
        self.created.add(user)
        self.tokens[user] = token

    def retire_tokens(self, user: str) -> None:
        old = self.tokens.pop(user, None)
        if old is not None:
            self.dead_tokens.append((user, old))

    # -- the Client Key ----------------------------------------------------------------

    @rule(user=users, in_one_step=st.booleans())
    def replace_client_key(self, user: str, in_one_step: bool) -> None:
        """Rotate the key (revoke and generate at once), or revoke it, what one does once
        it leaked, and generate the next one after: meanwhile nobody gets in."""
        assert self.client_key is not None
        self.dead_keys.append(self.client_key)
        if in_one_step:
            self.client_key = self.server.call(lambda s: s.keys.rotate_client_key(self.app_id))
            return
        self.server.call(lambda s: s.keys.revoke_client_key(self.app_id))
        self.client_key = None
        if user in self.tokens:
            response = self.as_user(user, "GET", "/me", key=self.dead_keys[-1])
            assert response.status_code == 403, response.text
        self.client_key = self.server.call(lambda s: s.keys.generate_client_key(self.app_id))

    # -- rooms and members -----------------------------------------------------------------

    @precondition(lambda self: self.created)
    @rule(data=st.data())
    def create_room(self, data: st.DataObject) -> None:
        """Mostly under an id that is free (perhaps a deleted room's), else a taken one."""
        missing = sorted(set(ROOMS) - set(self.rooms))
        room = data.draw(st.one_of(st.sampled_from(missing), rooms) if missing else rooms)
        members = data.draw(st.lists(st.sampled_from(sorted(self.created)), unique=True))
        self.create_room_of(room, members)

    def create_room_of(self, room: str, members: list[str]) -> None:
        body = {"_id": room, "name": room, "roomType": "group", "members": members}
        response = self.as_admin("POST", "/rooms", json=body)
        self.touched = room
        if room in self.rooms:
            assert response.status_code == 409, response.text  # ids are unique
            return
        ok(response)
        self.rooms[room] = Room(set())
        for member in members:
            self.rooms[room].add(member)
        self.gone.discard(room)

    @precondition(lambda self: len(self.rooms) > 1)  # keep a room to talk in
    @rule(room=rooms)
    def delete_room(self, room: str) -> None:
        response = self.as_admin("DELETE", f"/rooms/{room}")
        self.touched = room
        if room not in self.rooms:
            assert response.status_code == 404, response.text
            return
        ok(response)
        del self.rooms[room]
        self.gone.add(room)

    @precondition(lambda self: self.created)
    @rule(room=rooms, adding=st.booleans(), data=st.data())
    def change_members(self, room: str, adding: bool, data: st.DataObject) -> None:
        """Add some users to the room, or remove some (members or not)."""
        if adding:
            chosen = st.lists(
                st.sampled_from(sorted(self.created)), min_size=1, max_size=3, unique=True
            )
            self.add_members(room, data.draw(chosen))
        else:
            self.remove_members(room, data.draw(some_users))

    def add_members(self, room: str, invitees: list[str]) -> None:
        body = {"invitees": invitees, "systemMessage": False}
        response = self.as_admin("POST", f"/rooms/{room}/members", json=body)
        self.touched = room
        if room not in self.rooms:
            assert response.status_code == 404, response.text
            return
        ok(response)
        for user in invitees:
            self.rooms[room].add(user)

    def remove_members(self, room: str, members: list[str]) -> None:
        body = {"members": members, "systemMessage": False}
        response = self.as_admin("POST", f"/rooms/{room}/delete/members", json=body)
        self.touched = room
        if room not in self.rooms:
            assert response.status_code == 404, response.text
            return
        ok(response)
        for user in members:
            self.rooms[room].remove(user)

    # -- messages and reading --------------------------------------------------------------

    def room_and_user(self, data: st.DataObject) -> tuple[str, str]:
        """Mostly a room that exists and one of its members: the interesting case."""
        room = data.draw(st.sampled_from(sorted(self.rooms)) if self.rooms else rooms)
        members = sorted(self.rooms[room].members) if room in self.rooms else []
        mostly_members = st.one_of(st.sampled_from(members), st.sampled_from(members), users)
        user = data.draw(mostly_members if members else users)
        return room, user

    @rule(data=st.data(), acts=st.lists(st.sampled_from(ACTS), min_size=1, max_size=6))
    def talk(self, data: st.DataObject, acts: list[str]) -> None:
        """Some messages and read marks, each by some user in some room: what most steps
        should do, since they move sequence numbers and badges."""
        for act in acts:
            if act == "send":
                self.send_message(data, data.draw(texts))
            elif act == "send as admin":
                self.send_as_admin(data, data.draw(texts))
            else:
                self.mark_read(data)

    def send_as_admin(self, data: st.DataObject, text: str) -> None:
        """``POST /messages``: the API Key sends as any existing user, member or not."""
        room, user = self.room_and_user(data)
        if user not in self.created:
            return  # a sender must exist; that refusal is not what this machine is about
        body = {"room": room, "sender": user, "message": text, "messageType": "text"}
        response = self.as_admin("POST", "/messages", json=body)
        self.touched = room
        model = self.rooms.get(room)
        if model is None:
            assert response.status_code in (403, 404), response.text
            return
        self.note("send: stored by the API Key")
        sent = ok(response)
        assert sent["seq"] == len(model.messages) + 1, sent
        model.append(Message(sent["_id"], user))

    def send_message(self, data: st.DataObject, text: str) -> None:
        room, user = self.room_and_user(data)
        body = {"message": text, "messageType": "text"}
        response = self.as_user(user, "POST", f"/rooms/{room}/message", json=body)
        self.touched = room
        if not self.can_call(user):
            self.note("send: refused, dead credentials")
            assert refused(response), response.text
            return
        model = self.rooms.get(room)
        if model is None or user not in model.members:
            self.note("send: refused, not a member")
            assert response.status_code in (403, 404), response.text
            return
        self.note("send: stored")
        sent = ok(response)
        assert sent["seq"] == len(model.messages) + 1, sent
        model.append(Message(sent["_id"], user))

    def mark_read(self, data: st.DataObject) -> None:
        room, user = self.room_and_user(data)
        model = self.rooms.get(room)
        self.touched = room
        if model is None or not model.messages:
            return
        index = data.draw(st.integers(0, len(model.messages) - 1))
        body = {"message": model.messages[index].id}
        response = self.as_user(user, "PUT", f"/rooms/{room}/lastRead", json=body)
        if not self.can_call(user):
            self.note("lastRead: refused, dead credentials")
            assert refused(response), response.text
        elif user not in model.members:
            self.note("lastRead: refused, not a member")
            assert response.status_code == 403, response.text
        else:
            self.note("lastRead: marked")
            model.read_up_to(user, index)
            assert ok(response)["badge"] == model.unread[user]

    # -- invariants ------------------------------------------------------------------------

    @invariant()
    def the_touched_room_agrees(self) -> None:
        self.note("steps")
        if self.touched is not None:
            self.check_room(self.touched)

    @invariant()
    def badges_are_the_unread_counts(self) -> None:
        for user in USERS:
            if self.can_call(user):
                got = ok(self.as_user(user, "GET", "/me/badge"))["badge"]
                assert got == self.model_badge(user), (user, got)

    @invariant()
    def revoked_credentials_stay_dead(self) -> None:
        # The latest of each after every step; all of them at the end of the run.
        self.check_dead(self.dead_tokens[-1:], self.dead_keys[-1:])

    def model_badge(self, user: str) -> int:
        return sum(room.unread.get(user, 0) for room in self.rooms.values())

    def check_room(self, room_id: str) -> None:
        """Every user with live credentials sees the room as a member, or not at all;
        its history holds the sequence numbers 1..n."""
        model = self.rooms.get(room_id)
        for user in USERS:
            if not self.can_call(user):
                continue
            room = self.as_user(user, "GET", f"/rooms/{room_id}")
            history = self.as_user(
                user, "GET", f"/rooms/{room_id}/messages/v3", params={"limit": 100}
            )
            if model is None:
                self.note("room: gone")
                assert room.status_code in (403, 404), room.text
                assert history.status_code in (403, 404), history.text
            elif user not in model.members:
                self.note("room: refused to a non-member")
                assert room.status_code == 403, room.text
                assert history.status_code == 403, history.text
            else:
                self.note("room: seen by a member")
                seen = ok(room)
                assert {m["_id"] for m in seen["members"]} == model.members, seen["members"]
                assert seen["unread"] == model.unread[user], (user, seen["unread"])
                got = sorted(m["seq"] for m in ok(history)["data"])
                assert got == list(range(1, len(model.messages) + 1)), (user, got)
        if model is not None:
            params = {"limit": 100, "sortOrder": "asc"}
            data = ok(self.as_admin("GET", f"/rooms/{room_id}/messages/v3", params=params))
            assert [m["seq"] for m in data["data"]] == list(range(1, len(model.messages) + 1))
            assert [m["_id"] for m in data["data"]] == [m.id for m in model.messages]

    def check_dead(self, tokens: list[tuple[str, str]], keys: list[str]) -> None:
        for user, token in tokens:
            if self.client_key is not None:
                response = self.as_user(user, "GET", "/me", token=token)
                assert response.status_code == 401, (user, response.text)
                self.note("dead token: refused")
        for key in keys:
            for user in sorted(self.tokens)[:1]:
                response = self.as_user(user, "GET", "/me", key=key)
                assert response.status_code == 403, (user, response.text)
                self.note("dead Client Key: refused")

    def check_everything(self) -> None:
        """The whole model, once a run has ended: every room, every credential, and each
        user's room list with its unread counts."""
        for room_id in sorted({*self.rooms, *self.gone}):
            self.check_room(room_id)
        self.check_dead(self.dead_tokens, self.dead_keys)
        for user in USERS:
            if not self.can_call(user):
                continue
            listed = ok(self.as_user(user, "GET", "/rooms", params={"limit": 100}))
            mine = {r: room for r, room in self.rooms.items() if user in room.members}
            got = {room["_id"]: room["unread"] for room in listed["data"]}
            assert got == {r: room.unread[user] for r, room in mine.items()}, user


class CheckedApiMachine(ApiMachine):
    """The machine, with the whole model checked once more at the end of each run."""

    def teardown(self) -> None:
        try:
            self.check_everything()
        finally:
            super().teardown()


# Short form: a few seconds on SQLite, somewhat more on PostgreSQL. A failing run takes
# longer: Hypothesis shrinks it, each replay on a fresh app, then prints the steps.
@pytest.mark.timeout(0 if is_full_run() else 180)  # 0: no limit
def test_the_api_follows_the_model(server: Server) -> None:
    ApiMachine.server = server
    ApiMachine.tally.clear()
    run_state_machine_as_test(
        CheckedApiMachine, settings=fuzz_settings(SHORT_RUNS, stateful_step_count=STEPS)
    )
    print(f"\nstate machine: {dict(sorted(ApiMachine.tally.items()))}")
    for outcome in OUTCOMES:
        assert ApiMachine.tally[outcome] > 0, f"no step ended in {outcome!r}"
