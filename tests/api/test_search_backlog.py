"""SQLite's full-text index is filled after the send (migration 0008): a new message waits
in the search backlog until the message writer indexes it, and a search indexes whatever
still waits before it reads. These tests run a node of their own on a SQLite file (the
backlog exists on SQLite only), whatever database the rest of the suite uses, and check:
a message is found by the first search after its ack; the writer empties the backlog by
itself, idle or under steady load; nothing waiting is lost across a restart or a
downgrade; edits, recalls and deletes leave the index exact, for waiting and for indexed
messages alike."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory

from parley.services import message_writer
from parley.storage.db import MIGRATIONS_DIR, SearchBacklog, run_migrations
from tests.conftest import LogCapture, Server, issue_token, make_settings, ok


class Node:
    """A node on a SQLite file of its own, which can be stopped and started again."""

    def __init__(self, data_dir: Path) -> None:
        self.settings = make_settings(data_dir, database_url="", redis_url="")
        self.url = self.settings.effective_database_url
        self.path = self.url.split(":///", 1)[1]
        run_migrations(self.url)
        self.server = Server(self.settings).start()

    def restart(self) -> None:
        self.server.stop()
        self.server = Server(self.settings).start()

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        with sqlite3.connect(self.path, timeout=10) as conn:
            return [tuple(r) for r in conn.execute(sql)]

    def count(self, sql: str) -> int:
        return int(self.rows(sql)[0][0])

    def waiting(self) -> int:
        return self.count("SELECT count(*) FROM message_search_backlog")

    def indexed(self) -> set[str]:
        return {r[0] for r in self.rows("SELECT message_id FROM message_search_keys")}


@pytest.fixture
def node(tmp_path: Path, log_capture: LogCapture) -> Iterator[Node]:
    running = Node(tmp_path / "data")
    yield running
    running.server.stop()


@pytest.fixture
def quiet_writer(monkeypatch: pytest.MonkeyPatch) -> None:
    """The writer never indexes by itself: only a search moves the backlog."""
    monkeypatch.setattr(message_writer, "INDEX_IDLE_SECONDS", 3600.0)
    monkeypatch.setattr(message_writer, "INDEX_MAX_DELAY_SECONDS", 3600.0)
    monkeypatch.setattr(message_writer, "INDEX_BATCH", 10**9)


class Chat:
    """Alice and Bob in one room of the node."""

    def __init__(self, node: Node) -> None:
        keys = node.server.new_app()
        self.clients: list[httpx.Client] = []
        with node.server.client(**{"IM-API-KEY": keys.api_key}) as admin:
            self.alice = self._user(node, admin, keys.client_key, "alice")
            self.bob = self._user(node, admin, keys.client_key, "bob")
        room = ok(self.alice.post("/rooms/createAndJoin", json={"invitee": ["bob"]}))
        self.room = str(room["_id"])

    def _user(self, node: Node, admin: httpx.Client, client_key: str, name: str) -> httpx.Client:
        token = issue_token(admin, name, nickname=name.title())
        client = node.server.client(**{"IM-CLIENT-KEY": client_key, "IM-Authorization": token})
        self.clients.append(client)
        return client

    def send(self, text: str, sender: httpx.Client | None = None) -> str:
        body = {"messageType": "text", "message": text}
        sent = ok((sender or self.alice).post(f"/rooms/{self.room}/message", json=body))
        return str(sent["_id"])

    def change(self, body: dict[str, Any]) -> dict[str, Any]:
        return dict(ok(self.alice.post(f"/rooms/{self.room}/message", json=body)))

    def search(self, keyword: str, client: httpx.Client | None = None) -> list[str]:
        body = {"keyword": keyword, "type": ["messages"], "limit": 1000}
        result = ok((client or self.bob).post("/search", json=body))
        return [m for group in result["messages"] for m in group["messages"]]

    def close(self) -> None:
        for client in self.clients:
            client.close()


@pytest.fixture
def chat(node: Node) -> Iterator[Chat]:
    made = Chat(node)
    yield made
    made.close()


def eventually(check: Callable[[], bool], timeout: float = 5.0) -> float:
    """Seconds until ``check()`` held; fails after ``timeout``."""
    start = time.monotonic()
    while not check():
        assert time.monotonic() - start < timeout, "timed out"
        time.sleep(0.01)
    return time.monotonic() - start


# Each query counts what an exact index never holds.
INDEX_FAULTS = {
    "a key without its index row": "SELECT count(*) FROM message_search_keys k"
    " WHERE NOT EXISTS (SELECT 1 FROM message_search s WHERE s.rowid = k.key)",
    "an index row without its key": "SELECT count(*) FROM message_search s"
    " WHERE NOT EXISTS (SELECT 1 FROM message_search_keys k WHERE k.key = s.rowid)",
    "an index row of a message gone, emptied or changed since": "SELECT count(*)"
    " FROM message_search s JOIN message_search_keys k ON k.key = s.rowid"
    " LEFT JOIN messages m ON m.app_id = k.app_id AND m.id = k.message_id"
    " WHERE m.search_text IS NULL OR s.text <> m.search_text",
    "a message with text neither indexed nor waiting": "SELECT count(*) FROM messages m"
    " WHERE m.search_text IS NOT NULL"
    " AND NOT EXISTS (SELECT 1 FROM message_search_keys k"
    "   WHERE k.app_id = m.app_id AND k.message_id = m.id)"
    " AND NOT EXISTS (SELECT 1 FROM message_search_backlog b"
    "   WHERE b.app_id = m.app_id AND b.message_id = m.id)",
}


def assert_index_exact(node: Node) -> None:
    """The index holds every stored text once, as stored, and nothing else; every
    message with text is indexed or waiting."""
    faults = {fault: node.count(sql) for fault, sql in INDEX_FAULTS.items()}
    assert not any(faults.values()), faults


def test_a_message_is_found_by_the_first_search_after_its_ack(
    node: Node, chat: Chat, quiet_writer: None
) -> None:
    sent = chat.send("a falcon over the harbour")
    assert node.waiting() == 1 and sent not in node.indexed()  # stored, not indexed yet
    assert chat.search("falc harb") == [sent]
    assert node.waiting() == 0 and sent in node.indexed()
    assert_index_exact(node)


def test_a_search_indexes_a_long_backlog_in_several_transactions(
    node: Node, chat: Chat, quiet_writer: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(SearchBacklog, "CATCH_UP_CHUNK", 2)
    sent = [chat.send(f"heron number {i}") for i in range(7)]
    assert node.waiting() == 7
    assert sorted(chat.search("heron")) == sorted(sent)
    assert node.waiting() == 0
    assert_index_exact(node)


def test_searches_during_sends_find_every_message_acked_before_them(node: Node, chat: Chat) -> None:
    acked: list[str] = []
    stop = threading.Event()

    def keep_sending() -> None:
        while not stop.is_set() and len(acked) < 400:
            acked.append(chat.send(f"plover {len(acked)}", chat.bob))

    sender = threading.Thread(target=keep_sending)
    sender.start()
    try:
        eventually(lambda: len(acked) >= 5)
        for _ in range(10):
            before = list(acked)
            found = set(chat.search("plover", chat.alice))
            assert not set(before) - found, "a message acked before the search was missed"
    finally:
        stop.set()
        sender.join(timeout=30)
    assert_index_exact(node)


def test_the_writer_indexes_waiting_messages_when_it_is_idle(node: Node, chat: Chat) -> None:
    sent = {chat.send(f"egret {i}") for i in range(3)}
    # No search: the writer itself, once no send has come for a moment.
    waited = eventually(lambda: sent <= node.indexed() and node.waiting() == 0)
    assert waited < 2.0
    assert_index_exact(node)


def test_the_writer_indexes_under_steady_sending_too(
    node: Node, chat: Chat, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Never idle (the idle delay is out of reach), the writer still indexes once enough
    messages wait."""
    monkeypatch.setattr(message_writer, "INDEX_IDLE_SECONDS", 3600.0)
    monkeypatch.setattr(message_writer, "INDEX_MAX_DELAY_SECONDS", 3600.0)
    monkeypatch.setattr(message_writer, "INDEX_BATCH", 5)
    sent = [chat.send(f"curlew {i}") for i in range(12)]
    assert 0 < node.waiting() < 5
    assert len(set(sent) & node.indexed()) >= 8
    assert_index_exact(node)


def test_waiting_messages_survive_a_restart(node: Node, chat: Chat, quiet_writer: None) -> None:
    indexed = chat.send("a kestrel, indexed before the restart")
    assert chat.search("kestrel") == [indexed]
    waiting = chat.send("a kestrel still waiting at the restart")
    assert node.waiting() == 1
    node.restart()
    assert node.waiting() == 1  # the backlog is in the database, not in memory
    with node.server.client(**dict(chat.bob.headers)) as bob:
        assert sorted(chat.search("kestrel", bob)) == sorted([indexed, waiting])
    assert node.waiting() == 0
    assert_index_exact(node)


def test_edits_recalls_and_deletes_keep_the_index_exact(
    node: Node, chat: Chat, quiet_writer: None
) -> None:
    # The same changes, to messages indexed already and to messages still waiting.
    indexed = {name: chat.send(f"{name} starling first words") for name in ("e", "r", "d")}
    assert len(chat.search("starling")) == 3
    waiting = {name: chat.send(f"{name} starling first words") for name in ("e", "r", "d")}
    assert node.waiting() == 3

    for message_id in (indexed["e"], waiting["e"]):
        chat.change({"_id": message_id, "message": "starling second thoughts"})
    for message_id in (indexed["r"], waiting["r"]):
        chat.change({"_id": message_id, "messageType": "recall"})
    for message_id in (indexed["d"], waiting["d"]):
        deleted = chat.alice.delete(f"/rooms/{chat.room}/messages/{message_id}")
        assert deleted.json()["result"]["deletedCount"] == 1, deleted.text
    assert_index_exact(node)

    assert sorted(chat.search("starling")) == sorted([indexed["e"], waiting["e"]])
    assert sorted(chat.search("second")) == sorted([indexed["e"], waiting["e"]])
    assert chat.search("first") == []
    assert node.waiting() == 0
    assert_index_exact(node)


def test_downgrading_indexes_what_waits_and_upgrading_again_works(
    node: Node, chat: Chat, quiet_writer: None
) -> None:
    sent = [chat.send(f"a sandpiper {i}") for i in range(3)]
    assert node.waiting() == 3
    node.server.stop()
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["database_url"] = node.url
    backlog = next(
        r for r in ScriptDirectory.from_config(config).walk_revisions() if "backlog" in r.path
    )
    assert isinstance(backlog.down_revision, str)
    command.downgrade(config, backlog.down_revision)  # to just before the backlog
    assert set(sent) <= node.indexed()
    after = {r[0] for r in node.rows("SELECT name FROM sqlite_master WHERE type = 'trigger'")}
    assert "messages_search_insert" in after and "messages_search_backlog" not in after
    command.upgrade(config, "head")
    node.server = Server(node.settings).start()
    with node.server.client(**dict(chat.bob.headers)) as bob:
        later = chat.send("one more sandpiper", bob)
        assert sorted(chat.search("sandpiper", bob)) == sorted([*sent, later])
    assert_index_exact(node)
