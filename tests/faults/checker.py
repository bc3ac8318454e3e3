"""The verdict of a fault-injection run, in the manner of Jepsen's queue checker.

Inputs are plain data gathered by the harness:

- ``acked``: every send the server acknowledged, by client message id: its room, its
  sender and the ``seq`` the acknowledgement carried, in the order the acks arrived.
- ``attempted``: every client message id a sender tried at least once (acked or not).
- ``history``: per room, the messages of the workload that the room's history returns
  after the run, as ``(client message id, seq)`` in history order.
- ``received``: per receiver, the ``chat message`` events it was handed, live or
  resumed, as ``(room, client message id, seq)`` in arrival order.
- ``members``: per receiver, the rooms it belongs to (it must receive all of theirs).

What counts (each message counted once per place it goes wrong):

- lost: acked but missing from its room's history, or from a member's received set;
- duplicated: each extra copy, in a room's history or in what a receiver was handed;
- unexpected: present (history or received) though never acknowledged; ``recovered``
  says how many of those were attempted (an ack lost on the way back: allowed by the
  contract, and a retry would have returned the same message) — the others were never
  sent by anyone, which no fault excuses;
- out_of_order: two stored messages of a room with the same ``seq``, an ack whose
  ``seq`` differs from the stored message's, a sender's acks in one room whose ``seq``
  goes down (senders send one message at a time), or a receiver handed a room's message
  whose ``seq`` is not above the last one it had of that room;
- history_order (reported, not judged): neighbours in a room's history, which is ordered
  by creation time, whose ``seq`` goes down — history and live delivery disagree on the
  order of those two messages, though neither is lost or doubled.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Ack:
    room: str
    sender: str
    seq: int


@dataclass
class Verdict:
    acked: int = 0
    lost: int = 0
    duplicated: int = 0
    unexpected: int = 0
    recovered: int = 0
    out_of_order: int = 0
    history_order: int = 0
    problems: list[str] = field(default_factory=list)  # the first few, to read on failure

    @property
    def valid(self) -> bool:
        """Nothing lost, nothing doubled, nothing let in, nothing reordered."""
        return (self.lost, self.duplicated, self.unexpected, self.out_of_order) == (0, 0, 0, 0)

    def note(self, problem: str) -> None:
        if len(self.problems) < 20:
            self.problems.append(problem)


def check(
    acked: Mapping[str, Ack],
    attempted: Iterable[str],
    history: Mapping[str, list[tuple[str, int]]],
    received: Mapping[str, list[tuple[str, str, int]]],
    members: Mapping[str, Iterable[str]],
) -> Verdict:
    verdict = Verdict(acked=len(acked))
    tried = set(attempted)
    unexpected: set[str] = set()
    _check_history(verdict, acked, history, unexpected)
    _check_senders(verdict, acked)
    for receiver, events in received.items():
        _check_receiver(
            verdict, receiver, acked, events, set(members.get(receiver, ())), unexpected
        )
    verdict.unexpected = len(unexpected)
    verdict.recovered = len(unexpected & tried)
    return verdict


def _check_history(
    verdict: Verdict,
    acked: Mapping[str, Ack],
    history: Mapping[str, list[tuple[str, int]]],
    unexpected: set[str],
) -> None:
    stored: dict[str, tuple[str, int]] = {}
    for room, messages in history.items():
        copies = Counter(cmid for cmid, _ in messages)
        for cmid, count in copies.items():
            if count > 1:
                verdict.duplicated += count - 1
                verdict.note(f"{cmid} stored {count} times in {room}")
        previous = None
        for cmid, seq in messages:
            if previous is not None and seq < previous:
                verdict.history_order += 1
                verdict.note(f"history of {room}: seq {seq} after {previous}")
            previous = seq
            stored.setdefault(cmid, (room, seq))
        seqs = Counter(seq for _, seq in messages)
        for seq, count in seqs.items():
            if count > 1 and len({c for c, s in messages if s == seq}) > 1:
                verdict.out_of_order += count - 1
                verdict.note(f"history of {room}: {count} messages with seq {seq}")
            if cmid not in acked:
                unexpected.add(cmid)
    for cmid, ack in acked.items():
        where = stored.get(cmid)
        if where is None or where[0] != ack.room:
            verdict.lost += 1
            verdict.note(f"{cmid} acked (seq {ack.seq} in {ack.room}) but not in its history")
        elif where[1] != ack.seq:
            verdict.out_of_order += 1
            verdict.note(f"{cmid} acked with seq {ack.seq} but stored with seq {where[1]}")


def _check_senders(verdict: Verdict, acked: Mapping[str, Ack]) -> None:
    last: dict[tuple[str, str], int] = {}
    for cmid, ack in acked.items():  # in the order the acks arrived
        key = (ack.sender, ack.room)
        if key in last and ack.seq <= last[key]:
            verdict.out_of_order += 1
            verdict.note(f"{ack.sender}'s {cmid} got seq {ack.seq} after {last[key]}")
        last[key] = ack.seq


def _check_receiver(
    verdict: Verdict,
    receiver: str,
    acked: Mapping[str, Ack],
    events: list[tuple[str, str, int]],
    rooms: set[str],
    unexpected: set[str],
) -> None:
    copies = Counter(cmid for _, cmid, _ in events)
    for cmid, count in copies.items():
        if count > 1:
            verdict.duplicated += count - 1
            verdict.note(f"{receiver} was handed {cmid} {count} times")
        if cmid not in acked:
            unexpected.add(cmid)
    last: dict[str, int] = {}
    for room, cmid, seq in events:
        if room in last and seq <= last[room]:
            verdict.out_of_order += 1
            verdict.note(f"{receiver} got {cmid} (seq {seq}) after seq {last[room]} in {room}")
        last[room] = max(seq, last.get(room, seq))
    for cmid, ack in acked.items():
        if ack.room in rooms and cmid not in copies:
            verdict.lost += 1
            verdict.note(f"{receiver} never got {cmid} (seq {ack.seq} in {ack.room})")


def table(rows: Mapping[str, Verdict], extra: Mapping[str, Mapping[str, str]] | None = None) -> str:
    """The counts per scenario as a fixed-width table (``extra``: more columns by row)."""
    extra = extra or {}
    more = sorted({key for columns in extra.values() for key in columns})
    head = ["scenario", "acked", "lost", "dup", "unexpected", "recovered", "out-of-order"]
    head += ["hist-order", "ok"]
    head += more
    lines = [head]
    for name, v in rows.items():
        cells = [name, v.acked, v.lost, v.duplicated, v.unexpected, v.recovered, v.out_of_order]
        cells.append(v.history_order)
        cells.append("yes" if v.valid else "NO")
        cells += [extra.get(name, {}).get(key, "") for key in more]
        lines.append([str(c) for c in cells])
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in lines
    )
