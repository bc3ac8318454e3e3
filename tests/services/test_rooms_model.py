"""Rooms against a model: random sequences of room operations by a few users, through the
real HTTP API, checked after every step against a plain model of each room's owner,
members, roles, unread counts and pending invitations (with their inviters).

The model mirrors two pieces of parley.services: the rights table of ``rooms.py`` (who may
do what, so a forbidden call must answer 403 and change nothing) and ``append_message``
(a system message bumps the badge of every member but its sender; the API Key acting
without a user is no sender, so it bumps everyone). Marking the last message read sets
one's own count back to zero.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, ClassVar

import httpx
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from tests.conftest import Server, assert_error, issue_token, ok

USERS = ("ann", "ben", "cat", "dan")
API = "(api)"  # the API Key without IM-CLIENT-ID: the app itself, no user
ACTORS = (*USERS, API)

users = st.sampled_from(USERS)
some_users = st.lists(users, min_size=1, max_size=3, unique=True)


@dataclass
class Room:
    owner: str | None
    roles: dict[str, str]  # member → "admin" | "member"
    unread: dict[str, int] = field(default_factory=dict)
    last_message: str | None = None  # id, as the server answered it
    invited: dict[str, str | None] = field(default_factory=dict)  # invitee → inviter

    def superuser(self, actor: str) -> bool:
        """Removes others: the owner, role admins, the API Key (and managers, whom this
        model never names)."""
        return actor == API or actor == self.owner or self.roles.get(actor) == "admin"

    def may_grant(self, actor: str) -> bool:
        """Grants roles: the owner, role admins, the API Key."""
        return actor == API or actor == self.owner or self.roles.get(actor) == "admin"

    def admins(self) -> list[str]:
        return [m for m, role in self.roles.items() if role == "admin"]

    def is_member(self, actor: str) -> bool:
        return actor == API or actor in self.roles  # the API Key acts in every room

    def join(self, user: str) -> None:
        """Joining, or being added, settles any pending invitation."""
        self.roles[user] = "member"
        self.unread[user] = 0
        self.invited.pop(user, None)

    def drop(self, user: str) -> None:
        del self.roles[user], self.unread[user]
        if self.owner == user:
            self.owner = None

    def message(self, sender: str, view: dict[str, Any]) -> None:
        """A system message by ``sender``: +1 for every other member."""
        for member in self.roles:
            if member != sender:
                self.unread[member] += 1
        last = view["lastMessage"]
        assert last["_id"] != self.last_message, "no new message"
        assert (last["sender"] or {}).get("_id") == (None if sender == API else sender), last
        self.last_message = last["_id"]


class RoomsMachine(RuleBasedStateMachine):
    server: ClassVar[Server]
    rooms = Bundle("rooms")

    def __init__(self) -> None:
        super().__init__()
        self.model: dict[str, Room] = {}
        self.clients: dict[str, httpx.Client] = {}
        self.touched: str | None = None  # the room of the last step

    @initialize(target=rooms)
    def a_fresh_app_four_users_and_a_room_with_an_admin(self) -> str:
        """One app per run. Its first room (ann owns it, ben is an admin, cat a member)
        starts where rights are most interesting: an admin who is not the owner."""
        keys = self.server.new_app("model")
        self.clients[API] = self.server.client(**{"IM-API-KEY": keys.api_key})
        for user in USERS:
            token = issue_token(self.clients[API], user, nickname=user.title())
            self.clients[user] = self.server.client(
                **{"IM-CLIENT-KEY": keys.client_key, "IM-Authorization": token}
            )
        room_id = self.create_and_join("ann", ["ben", "cat"], system=False)
        granted = ok(
            self.clients["ann"].put(
                f"/rooms/{room_id}/member/ben", json={"property": "role", "value": "admin"}
            )
        )
        self.model[room_id].roles["ben"] = "admin"
        self.model[room_id].message("ann", granted)
        return room_id

    def teardown(self) -> None:
        for client in self.clients.values():
            client.close()

    # -- helpers -------------------------------------------------------------------------

    def snapshot(self, room_id: str) -> Any:
        return ok(self.clients[API].get(f"/rooms/{room_id}"))

    def forbidden(self, room_id: str, response_of: Callable[[], httpx.Response], code: str) -> None:
        """The call answers 403 with ``code`` and leaves the room exactly as it was."""
        before = self.snapshot(room_id)
        assert_error(response_of(), 403, code)
        assert self.snapshot(room_id) == before

    @staticmethod
    def someone(
        data: st.DataObject,
        room: Room,
        pool: tuple[str, ...],
        favourites: list[str],
        but: str | None = None,
    ) -> str:
        """Anyone of ``pool``, a member of the room, or one of ``favourites`` (never
        ``but``), each as often: most rights are about which member may do what to which,
        and a uniform draw rarely picks, say, an admin who is not the owner."""
        pool = tuple(u for u in pool if u != but)
        members = sorted(m for m in room.roles if m != but)
        favourites = sorted(f for f in favourites if f != but)
        return data.draw(
            st.sampled_from(pool)
            | st.sampled_from(members or pool)
            | st.sampled_from(favourites or members or pool)
        )

    # -- rules ---------------------------------------------------------------------------

    # Few rooms with members, so that steps meet in them.
    @precondition(lambda self: sum(1 for room in self.model.values() if room.roles) < 3)
    @rule(target=rooms, actor=users, invitees=st.lists(users, max_size=3), system=st.booleans())
    def create_and_join(self, actor: str, invitees: list[str], system: bool) -> str:
        view = ok(
            self.clients[actor].post(
                "/rooms/createAndJoin", json={"invitee": invitees, "systemMessage": system}
            )
        )
        room = Room(owner=actor, roles={})
        for user in dict.fromkeys([actor, *invitees]):
            room.join(user)
        if system:
            room.message(actor, view)
        else:
            assert "lastMessage" not in view
        self.model[view["_id"]] = room
        self.touched = str(view["_id"])
        return self.touched

    @rule(room_id=rooms, actor=users, system=st.booleans())
    def join(self, room_id: str, actor: str, system: bool) -> None:
        room, self.touched = self.model[room_id], room_id
        view = ok(
            self.clients[actor].post(f"/rooms/{room_id}/join", json={"systemMessage": system})
        )
        if actor in room.roles:  # joining again changes nothing
            return
        room.join(actor)
        if system:
            room.message(actor, view)

    @rule(room_id=rooms, data=st.data(), system=st.booleans())
    def leave(self, room_id: str, data: st.DataObject, system: bool) -> None:
        actor = self.someone(data, self.model[room_id], USERS, [])
        self.remove(room_id, actor, actor, system)

    @rule(room_id=rooms, data=st.data(), system=st.booleans())
    def kick(self, room_id: str, data: st.DataObject, system: bool) -> None:
        room = self.model[room_id]
        actor = self.someone(data, room, ACTORS, room.admins())
        member = self.someone(data, room, USERS, [room.owner] if room.owner else [], but=actor)
        self.remove(room_id, actor, member, system)

    def remove(self, room_id: str, actor: str, member: str, system: bool) -> None:
        """``actor`` removes ``member``: leaving when they are the same."""
        room, self.touched = self.model[room_id], room_id
        remove = partial(
            self.clients[actor].post,
            f"/rooms/{room_id}/delete/members",
            json={"members": [member], "systemMessage": system},
        )
        if not room.is_member(actor):
            self.forbidden(room_id, remove, "NOT_ROOM_MEMBER")
        elif member != actor and (
            not room.superuser(actor) or (member == room.owner and actor != API)
        ):
            # Plain members remove no one else; only the app removes the owner.
            self.forbidden(room_id, remove, "INSUFFICIENT_PERMISSIONS")
        else:
            view = ok(remove())
            if member in room.roles:  # removing a non-member is a no-op, without a message
                room.drop(member)
                if system:
                    room.message(actor, view)

    @rule(room_id=rooms, data=st.data(), invitees=some_users, system=st.booleans())
    def add_members(
        self, room_id: str, data: st.DataObject, invitees: list[str], system: bool
    ) -> None:
        room, self.touched = self.model[room_id], room_id
        actor = self.someone(data, room, ACTORS, [])
        add = partial(
            self.clients[actor].post,
            f"/rooms/{room_id}/members",
            json={"invitees": invitees, "systemMessage": system},
        )
        if not room.is_member(actor):
            self.forbidden(room_id, add, "NOT_ROOM_MEMBER")
            return
        view = ok(add())
        new = [u for u in invitees if u not in room.roles]
        for user in new:
            room.join(user)
        if system and new:
            room.message(actor, view)

    @rule(room_id=rooms, data=st.data(), invitees=some_users)
    def invite(self, room_id: str, data: st.DataObject, invitees: list[str]) -> None:
        room, self.touched = self.model[room_id], room_id
        actor = self.someone(data, room, ACTORS, [])
        invite = partial(
            self.clients[actor].post,
            f"/rooms/{room_id}/members",
            json={"invitees": invitees, "invitationRequired": True},
        )
        if not room.is_member(actor):
            self.forbidden(room_id, invite, "NOT_ROOM_MEMBER")
            return
        ok(invite())
        for user in invitees:
            if user not in room.roles:  # members are not invited; a re-invite renews
                room.invited[user] = None if actor == API else actor

    @rule(room_id=rooms, actor=users)
    def decline(self, room_id: str, actor: str) -> None:
        room, self.touched = self.model[room_id], room_id
        response = self.clients[actor].delete(f"/rooms/{room_id}/invitations")
        if actor in room.invited:
            ok(response)
            del room.invited[actor]
        else:
            assert_error(response, 404, "INVITATION_NOT_FOUND")

    @rule(room_id=rooms, data=st.data(), invitees=some_users)
    def withdraw(self, room_id: str, data: st.DataObject, invitees: list[str]) -> None:
        """Superusers withdraw any invitation; other members only their own."""
        room, self.touched = self.model[room_id], room_id
        actor = self.someone(data, room, ACTORS, [i for i in room.invited.values() if i])
        withdraw = partial(
            self.clients[actor].post,
            f"/rooms/{room_id}/delete/invitations",
            json={"invitees": invitees, "systemMessage": False},
        )
        pending = [u for u in invitees if u in room.invited]
        if not room.is_member(actor):
            self.forbidden(room_id, withdraw, "NOT_ROOM_MEMBER")
        elif not room.superuser(actor) and any(room.invited[u] != actor for u in pending):
            self.forbidden(room_id, withdraw, "INSUFFICIENT_PERMISSIONS")
        else:
            ok(withdraw())
            for user in pending:
                del room.invited[user]

    @rule(room_id=rooms, data=st.data(), role=st.sampled_from(["admin", "member"]))
    def grant(self, room_id: str, data: st.DataObject, role: str) -> None:
        room, self.touched = self.model[room_id], room_id
        actor = self.someone(data, room, ACTORS, room.admins())
        grantee = self.someone(data, room, USERS, [m for m in room.roles if m not in room.admins()])
        grant = partial(
            self.clients[actor].put,
            f"/rooms/{room_id}/member/{grantee}",
            json={"property": "role", "value": role},
        )
        if not room.is_member(actor):
            self.forbidden(room_id, grant, "NOT_ROOM_MEMBER")
        elif grantee not in room.roles:  # looked up before the caller's rights
            assert_error(grant(), 404, "CLIENT_NOT_FOUND")
        elif not room.may_grant(actor):
            self.forbidden(room_id, grant, "INSUFFICIENT_PERMISSIONS")
        else:
            view = ok(grant())
            promoted = role == "admin" and room.roles[grantee] != "admin"
            room.roles[grantee] = role
            if promoted:  # always announced (assignAdmin); there is no systemMessage flag
                room.message(actor, view)

    @rule(room_id=rooms, data=st.data())
    def mark_read(self, room_id: str, data: st.DataObject) -> None:
        room, self.touched = self.model[room_id], room_id
        actor = self.someone(data, room, USERS, [])
        message = room.last_message or "0" * 24
        read = partial(
            self.clients[actor].put, f"/rooms/{room_id}/lastRead", json={"message": message}
        )
        if actor not in room.roles:
            self.forbidden(room_id, read, "NOT_ROOM_MEMBER")
        elif room.last_message is None:
            assert_error(read(), 404, "MESSAGE_NOT_FOUND")
        else:
            assert ok(read()) == {"client": actor, "lastRead": message, "badge": 0}
            room.unread[actor] = 0

    # -- invariants ----------------------------------------------------------------------

    @staticmethod
    def check(view: dict[str, Any], room: Room) -> None:
        """A room as the API Key reads it: exactly the model's owner, members, roles,
        unread counts and last message."""
        where = view["_id"]
        assert view["owner"] == room.owner, where
        assert {m["_id"] for m in view["members"]} == set(room.roles), where
        props = {p["client"]: p for p in view["memberProperties"]}
        assert {c: p["role"] for c, p in props.items()} == room.roles, where
        assert {c: p["badge"] for c, p in props.items()} == room.unread, where
        assert (view.get("lastMessage") or {}).get("_id") == room.last_message, where

    @invariant()
    def the_room_of_the_last_step_is_as_the_model_has_it(self) -> None:
        if self.touched is not None:
            room = self.model[self.touched]
            self.check(self.snapshot(self.touched), room)
            pending = ok(self.clients[API].get(f"/rooms/{self.touched}/invitations"))
            got = {
                i["invitee"]["_id"]: (i["inviter"] or {}).get("_id")
                if isinstance(i["inviter"], dict)
                else i["inviter"]
                for i in pending["data"]
            }
            assert got == room.invited, self.touched

    @invariant()
    def every_user_sees_exactly_their_invitations(self) -> None:
        if not self.clients:
            return
        for user in USERS:
            mine = ok(self.clients[user].get("/rooms/invitations"))
            rooms = {i["room"]["_id"] for i in mine["data"]}
            assert rooms == {r for r, room in self.model.items() if user in room.invited}, user

    @invariant()
    def every_room_of_the_app_is_as_the_model_has_it(self) -> None:
        if not self.clients:  # before initialize
            return
        # The API Key without a user lists all the app's rooms: one request per step.
        listed = ok(self.clients[API].get("/rooms", params={"limit": 100}))
        views = {v["_id"]: v for v in listed["data"]}
        assert set(views) == set(self.model)
        for room_id, room in self.model.items():
            self.check(views[room_id], room)

    @invariant()
    def every_user_lists_their_rooms_newest_first_with_their_unread_count(self) -> None:
        if not self.clients:
            return
        for user in USERS:
            listed = ok(self.clients[user].get("/rooms", params={"limit": 100}))
            mine = {r: room for r, room in self.model.items() if user in room.roles}
            assert listed["totalCount"] == len(mine)
            got = {v["_id"]: v for v in listed["data"]}
            assert set(got) == set(mine), user
            for room_id, room in mine.items():
                assert got[room_id]["unread"] == room.unread[user], (user, room_id)
                assert got[room_id]["isSuperuser"] == room.superuser(user), (user, room_id)
            # Newest activity first: the membership's copy of the room's activity time
            # must agree with the room's own last message (or creation) time.
            activity = [
                (-(v.get("lastMessage") or {}).get("createdAtMS", v["createdTimeMS"]), v["_id"])
                for v in listed["data"]
            ]
            assert activity == sorted(activity), user


# A passing run takes about 30 s. A failing one takes longer: Hypothesis shrinks it by
# replaying runs, each on a fresh app, for up to 5 minutes, and then prints the steps.
@pytest.mark.timeout(420)
def test_rooms_follow_the_model(server: Server) -> None:
    RoomsMachine.server = server
    run_state_machine_as_test(
        RoomsMachine,
        settings=settings(
            max_examples=25,
            stateful_step_count=15,
            deadline=None,
            database=None,  # no example files in the working tree
            suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
        ),
    )
