"""Meta's limits for the kinds Waypost sends (waypost/kinds.py): refused before any send, with a reason."""

from __future__ import annotations

import pytest

from waypost import kinds
from waypost.kinds import InvalidMessage, check_interactive, check_reaction, list_message, reply_buttons


def _buttons(*titles: str) -> dict:
    return {
        "type": "button",
        "body": {"text": "Is Friday 2 pm good?"},
        "action": {"buttons": [{"type": "reply", "reply": {"id": t.lower(), "title": t}} for t in titles]},
    }


def test_reply_buttons_and_lists_within_the_limits_pass_trimmed() -> None:
    built = reply_buttons(" Is Friday 2 pm good? ", [("yes", "Yes"), ("no", "No")], footer="Acme")
    assert built["body"] == {"text": "Is Friday 2 pm good?"}
    assert [b["reply"]["id"] for b in built["action"]["buttons"]] == ["yes", "no"]
    listed = list_message("Pick a size", "Sizes", [(f"s{i}", f"Size {i}", None) for i in range(10)])
    assert len(listed["action"]["sections"][0]["rows"]) == 10
    assert kinds.summary("interactive", built, None) == "Is Friday 2 pm good? [Yes | No]"


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (_buttons("A", "B", "C", "D"), "at most 3"),
        (_buttons("A title that is far too long"), "at most 20 characters"),
        (_buttons("Yes", "Yes"), "distinct"),
        ({**_buttons("Yes"), "body": {"text": ""}}, "body.text"),
        ({**_buttons("Yes"), "type": "list"}, "button: Field required"),
        ({**_buttons("Yes"), "header": {"type": "image", "text": "x"}}, "header.type"),
        ({**_buttons("Yes"), "extra": 1}, "extra"),
    ],
)
def test_interactive_messages_meta_would_refuse_are_refused_with_the_limit(content: dict, reason: str) -> None:
    with pytest.raises(InvalidMessage, match=reason):
        check_interactive(content)


def test_a_list_counts_rows_across_sections_and_needs_titles_for_several() -> None:
    rows = [{"id": f"r{i}", "title": f"Row {i}"} for i in range(6)]
    two = {"type": "list", "body": {"text": "Pick"}, "action": {"button": "Open", "sections": [{"rows": rows}] * 2}}
    with pytest.raises(InvalidMessage, match="at most 10 rows in all"):
        check_interactive(two)
    with pytest.raises(InvalidMessage, match="title"):
        check_interactive({**two, "action": {"button": "Open", "sections": [{"rows": rows[:3]}, {"rows": rows[3:]}]}})
    with pytest.raises(InvalidMessage, match="distinct ids"):
        list_message("Pick", "Open", [("a", "A", None), ("a", "B", None)])


def test_reactions() -> None:
    assert check_reaction({"message_id": "wamid.X", "emoji": "👍"}) == {"message_id": "wamid.X", "emoji": "👍"}
    assert check_reaction({"message_id": "wamid.X", "emoji": ""})["emoji"] == ""  # removes it
    with pytest.raises(InvalidMessage, match="message_id"):
        check_reaction({"emoji": "👍"})


def test_a_claim_keeps_the_kind_and_object_decided_first(db) -> None:
    """waypost_claim_send_v2: a retry (or a second worker) gets the stored object, never a new one."""
    from psycopg.types.json import Jsonb

    conversation_id = db.execute(
        "INSERT INTO conversations (phone_number_id, wa_id) VALUES ('p', '1') RETURNING id"
    ).fetchone()["id"]
    first = reply_buttons("Is Friday good?", [("yes", "Yes"), ("no", "No")])
    claim = "SELECT * FROM waypost_claim_send_v2(%s, 'k', 'ai', %s, %s, %s, NULL, interval '0', interval '0')"
    row = db.execute(claim, [conversation_id, "interactive", "Is Friday good?", Jsonb(first)]).fetchone()
    assert (row["outcome"], row["type"], row["payload"]) == ("claimed", "interactive", first)
    db.execute("UPDATE messages SET status = 'failed' WHERE id = %s", [row["message_id"]])
    again = db.execute(claim, [conversation_id, "text", "something else", None]).fetchone()
    assert (again["outcome"], again["type"], again["payload"], again["body"]) == (
        "failed",
        "interactive",
        first,
        "Is Friday good?",
    )
