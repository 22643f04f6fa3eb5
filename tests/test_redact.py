"""Tokens never leave the process: every output path goes through the Redactor."""

from __future__ import annotations

import html
import io
import json
from pathlib import Path

from releasegate.redact import MIN_SECRET_LENGTH, RedactingStream, Redactor

TOKEN = "tok-3f9a8b7c6d5e"


def test_text_replaces_every_occurrence_with_the_variable_name() -> None:
    redactor = Redactor([("RG_TOKEN", TOKEN)])

    assert (
        redactor.text(f"Authorization: Bearer {TOKEN}; again {TOKEN}")
        == "Authorization: Bearer [redacted:RG_TOKEN]; again [redacted:RG_TOKEN]"
    )
    assert redactor.text("nothing secret here") == "nothing secret here"


def test_data_redacts_strings_at_any_depth_dict_keys_included() -> None:
    redactor = Redactor([("RG_TOKEN", TOKEN)])
    evidence = {
        "status": 401,
        "headers": {"authorization": f"Bearer {TOKEN}", TOKEN: "a header named by the token"},
        "attempts": [{"url": f"https://a.test/?token={TOKEN}"}, (TOKEN, 3)],
        "ok": False,
        "latency": None,
    }

    assert redactor.data(evidence) == {
        "status": 401,
        "headers": {"authorization": "Bearer [redacted:RG_TOKEN]", "[redacted:RG_TOKEN]": "a header named by the token"},
        "attempts": [{"url": "https://a.test/?token=[redacted:RG_TOKEN]"}, ["[redacted:RG_TOKEN]", 3]],
        "ok": False,
        "latency": None,
    }


def test_a_secret_containing_another_is_replaced_whole() -> None:
    # Registered shortest first on purpose: the order of registration must not matter.
    redactor = Redactor([("SHORT", "abcdef12"), ("LONG", "abcdef1234567890")])

    assert redactor.text("x abcdef1234567890 y abcdef12 z") == "x [redacted:LONG] y [redacted:SHORT] z"


def test_short_or_empty_values_are_not_registered() -> None:
    # A 5-character "secret" would redact ordinary words all over the reports.
    redactor = Redactor([("SHORT", "a" * (MIN_SECRET_LENGTH - 1)), ("EMPTY", ""), ("NONE", None)])  # type: ignore[list-item]

    assert not redactor
    assert redactor.text("aaaaa") == "aaaaa"
    redactor.add("OK", "b" * MIN_SECRET_LENGTH)
    assert redactor
    assert redactor.text("bbbbbb") == "[redacted:OK]"


def test_scrub_tree_rewrites_only_the_files_that_contain_the_secret(tmp_path: Path) -> None:
    # Given a report dir where pytest's JUnit captured the token but other files did not
    (tmp_path / "allure-results").mkdir()
    junit = tmp_path / "junit.xml"
    junit.write_text(f"<system-out>Bearer {TOKEN}</system-out>", encoding="utf-8")
    nested = tmp_path / "allure-results" / "x-result.json"
    nested.write_text(f'{{"value": "{TOKEN}"}}', encoding="utf-8")
    clean = tmp_path / "summary.md"
    clean.write_text("nothing to see", encoding="utf-8")
    clean_mtime = clean.stat().st_mtime_ns

    changed = Redactor([("RG_TOKEN", TOKEN)]).scrub_tree(tmp_path)

    # Then exactly those two are rewritten, and the secret is gone from the tree
    assert changed == sorted([junit, nested])
    assert junit.read_text(encoding="utf-8") == "<system-out>Bearer [redacted:RG_TOKEN]</system-out>"
    assert nested.read_text(encoding="utf-8") == '{"value": "[redacted:RG_TOKEN]"}'
    assert clean.stat().st_mtime_ns == clean_mtime
    assert not any(TOKEN.encode() in p.read_bytes() for p in tmp_path.rglob("*") if p.is_file())


def test_scrub_tree_without_secrets_or_without_the_folder_does_nothing(tmp_path: Path) -> None:
    (tmp_path / "f.txt").write_text(TOKEN, encoding="utf-8")

    assert Redactor().scrub_tree(tmp_path) == []
    assert Redactor([("RG_TOKEN", TOKEN)]).scrub_tree(tmp_path / "missing") == []


def test_stream_catches_a_secret_split_across_two_writes() -> None:
    inner = io.StringIO()
    stream = RedactingStream(inner, Redactor([("RG_TOKEN", TOKEN)]))

    stream.write("Authorization: Bearer " + TOKEN[:5])
    # Nothing of an unfinished line is passed on: its end may complete a secret.
    assert inner.getvalue() == ""
    stream.write(TOKEN[5:] + " sent\nnext line ")
    assert inner.getvalue() == "Authorization: Bearer [redacted:RG_TOKEN] sent\n"

    # A flushed unfinished line is redacted too, down to a piece of the secret.
    stream.write(TOKEN[:8])
    stream.flush()
    assert inner.getvalue() == "Authorization: Bearer [redacted:RG_TOKEN] sent\nnext line [redacted:RG_TOKEN]"


def test_a_piece_of_a_secret_left_by_truncation_is_redacted() -> None:
    # Given a token cut by a 2 KiB excerpt, and a token shortened in the middle by pytest
    token = "s3cr3tTOKENabcdefghijklmnopqrstuvwxyz0123456789"
    redactor = Redactor([("RG_TOKEN", token)])
    cut_at_the_end = "Authorization: Bearer " + token[:15]
    shortened = f"'Bearer {token[:12]}...{token[-14:]}'"
    # Then no run of 8 or more of its characters survives, and ordinary text is left alone
    for text in (cut_at_the_end, shortened):
        redacted = redactor.text(text)
        assert not any(token[i : i + 8] in redacted for i in range(len(token) - 7)), redacted
    assert redactor.text("status 200, latency 12 ms, version 1.4.0") == "status 200, latency 12 ms, version 1.4.0"


def test_stream_flush_redacts_the_unfinished_line() -> None:
    inner = io.StringIO()
    stream = RedactingStream(inner, Redactor([("RG_TOKEN", TOKEN)]))

    assert stream.write(f"no newline {TOKEN}") == len(f"no newline {TOKEN}")
    stream.flush()

    assert inner.getvalue() == "no newline [redacted:RG_TOKEN]"


def test_a_secret_escaped_by_another_tool_is_scrubbed_too(tmp_path: Path) -> None:
    # Given a token with characters that JSON and XML escape, as JUnit and Allure would write it
    token = 'tok"en<&>-abcdef\\x'
    redactor = Redactor([("RELEASEGATE_TOKEN", token)])
    (tmp_path / "a.json").write_text(json.dumps({"body": token}))
    (tmp_path / "b.xml").write_text(f"<p>{html.escape(token)}</p>")
    # When the tree is scrubbed
    redactor.scrub_tree(tmp_path)
    # Then no spelling of the token survives
    for path in tmp_path.iterdir():
        text = path.read_text()
        assert "[redacted:RELEASEGATE_TOKEN]" in text
        assert json.dumps(token)[1:-1] not in text and html.escape(token) not in text
