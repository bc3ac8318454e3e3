"""The checker counts what it should: each kind of anomaly, planted alone, is found alone."""

from __future__ import annotations

from typing import Any

from tests.faults.checker import Ack, Verdict, check, table

ACKED = {
    "a1": Ack("r1", "a", 1),
    "b1": Ack("r1", "b", 2),
    "a2": Ack("r1", "a", 3),
    "c1": Ack("r2", "c", 1),
}
HISTORY = {"r1": [("a1", 1), ("b1", 2), ("a2", 3)], "r2": [("c1", 1)]}
RECEIVED = {
    "x": [("r1", "a1", 1), ("r2", "c1", 1), ("r1", "b1", 2), ("r1", "a2", 3)],
    "y": [("r2", "c1", 1)],
}
MEMBERS = {"x": ["r1", "r2"], "y": ["r2"]}


def run(**changes: Any) -> Verdict:
    inputs: dict[str, Any] = {
        "acked": ACKED,
        "attempted": list(ACKED),
        "history": HISTORY,
        "received": RECEIVED,
        "members": MEMBERS,
    }
    inputs.update(changes)
    return check(**inputs)


def counts(v: Verdict) -> tuple[int, int, int, int, int]:
    return (v.lost, v.duplicated, v.unexpected, v.recovered, v.out_of_order)


def test_a_clean_run_is_valid() -> None:
    verdict = run()
    assert verdict.valid and verdict.acked == 4
    assert counts(verdict) == (0, 0, 0, 0, 0)


def test_an_acked_message_missing_from_history_is_lost() -> None:
    verdict = run(history={"r1": [("a1", 1), ("a2", 3)], "r2": [("c1", 1)]})
    assert counts(verdict) == (1, 0, 0, 0, 0) and not verdict.valid
    assert "b1" in verdict.problems[0]


def test_an_acked_message_in_another_room_is_lost() -> None:
    verdict = run(history={"r1": [("a1", 1), ("b1", 2), ("a2", 3)], "r2": [], "r3": [("c1", 1)]})
    assert verdict.lost == 1


def test_a_member_that_never_received_a_message_loses_it() -> None:
    received = {**RECEIVED, "y": []}
    assert counts(run(received=received)) == (1, 0, 0, 0, 0)


def test_a_message_of_a_room_the_receiver_is_not_in_is_not_owed_to_it() -> None:
    assert run(members={"x": ["r1", "r2"], "y": ["r2"], "z": ["r3"]}).valid


def test_a_second_copy_in_history_is_duplicated() -> None:
    history = {"r1": [("a1", 1), ("b1", 2), ("b1", 3), ("a2", 4)], "r2": [("c1", 1)]}
    acked = {**ACKED, "a2": Ack("r1", "a", 4)}
    assert counts(run(history=history, acked=acked)) == (0, 1, 0, 0, 0)


def test_a_message_handed_twice_to_a_receiver_is_duplicated() -> None:
    received = {**RECEIVED, "y": [("r2", "c1", 1), ("r2", "c1", 1), ("r2", "c1", 1)]}
    verdict = run(received=received)
    assert verdict.duplicated == 2 and verdict.out_of_order == 2


def test_a_message_never_sent_is_unexpected_and_not_recovered() -> None:
    history = {**HISTORY, "r2": [("c1", 1), ("ghost", 2)]}
    received = {**RECEIVED, "y": [("r2", "c1", 1), ("r2", "ghost", 2)]}
    verdict = run(history=history, received=received)
    assert counts(verdict) == (0, 0, 1, 0, 0)  # one message, however many places


def test_an_attempt_stored_without_its_ack_is_unexpected_but_recovered() -> None:
    history = {**HISTORY, "r2": [("c1", 1), ("c2", 2)]}
    verdict = run(history=history, attempted=[*ACKED, "c2"])
    assert counts(verdict) == (0, 0, 1, 1, 0) and not verdict.valid


def test_history_whose_seq_goes_down_is_reported_but_not_judged() -> None:
    history = {"r1": [("a1", 1), ("a2", 3), ("b1", 2)], "r2": [("c1", 1)]}
    verdict = run(history=history)
    assert verdict.history_order == 1 and verdict.out_of_order == 0 and verdict.valid


def test_two_stored_messages_with_one_seq_are_out_of_order() -> None:
    history = {"r1": [("a1", 1), ("b1", 2), ("a2", 2)], "r2": [("c1", 1)]}
    verdict = run(history=history, acked={**ACKED, "a2": Ack("r1", "a", 2)})
    assert counts(verdict) == (0, 0, 0, 0, 1)


def test_an_ack_whose_seq_is_not_the_stored_one_is_out_of_order() -> None:
    acked = {**ACKED, "c1": Ack("r2", "c", 7)}
    assert counts(run(acked=acked)) == (0, 0, 0, 0, 1)


def test_a_senders_acks_whose_seq_goes_down_are_out_of_order() -> None:
    acked = {"a2": ACKED["a2"], "b1": ACKED["b1"], "a1": ACKED["a1"], "c1": ACKED["c1"]}
    assert run(acked=acked).out_of_order == 1


def test_a_receiver_handed_a_rooms_messages_out_of_seq_order() -> None:
    received = {**RECEIVED, "x": [("r1", "b1", 2), ("r1", "a1", 1), ("r2", "c1", 1)]}
    received["x"].append(("r1", "a2", 3))
    assert counts(run(received=received)) == (0, 0, 0, 0, 1)


def test_the_table_has_a_row_per_scenario_and_says_which_failed() -> None:
    text = table({"good": run(), "bad": run(received={**RECEIVED, "y": []})}, {"bad": {"x": "1"}})
    lines = text.splitlines()
    assert lines[0].split()[:3] == ["scenario", "acked", "lost"] and lines[0].split()[-1] == "x"
    assert lines[1].split()[-1] == "yes"
    assert lines[2].split()[2] == "1" and lines[2].split()[-2:] == ["NO", "1"]
