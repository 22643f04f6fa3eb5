"""Every `releasegate ...` command the guides and the deploy examples show is one the CLI accepts.

Users copy these lines into pipelines and terminals at bad moments; a renamed flag that the guides
still show fails there, not here. So each command in a code block of docs/*.md, README.md and the
files under deploy/ is parsed with the real argument parser (nothing is run). Usage synopses
(`[--gates FILE]`, `...`) are not commands and are left out.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from releasegate.cli import UsageError, build_parser

ROOT = Path(__file__).resolve().parents[1]
SOURCES = [*sorted((ROOT / "docs").glob("*.md")), ROOT / "README.md", *sorted(p for p in (ROOT / "deploy").rglob("*") if p.is_file())]
FENCE = re.compile(r"^```([^\n]*)\n(.*?)^```", re.M | re.S)
# The program as a line may start it: a prompt, a venv path, a YAML list item or a quoted command array.
COMMAND = re.compile(r"""^\s*(?:[-$]\s+)?(?:\S*/)?releasegate\s+(?=[a-z])(.*)$""")
SYNOPSIS = re.compile(r"\.\.\.|\[--|\bNAME\b|<[a-z]")


def code_lines(path: Path) -> list[tuple[int, str]]:
    """(line number, text) of the lines that may hold commands: code blocks of markdown, every line elsewhere."""
    text = path.read_text("utf-8")
    if path.suffix != ".md":
        return list(enumerate(text.splitlines(), 1))
    out: list[tuple[int, str]] = []
    for block in FENCE.finditer(text):
        first = text.count("\n", 0, block.start(2)) + 1
        lines = block.group(2).splitlines()
        if block.group(1).strip() == "console":  # a terminal: the commands are the prompt lines, the rest is output
            out += [(first + i, line) for i, line in enumerate(lines) if line.startswith("$ ")]
        else:
            out += [(first + i, line) for i, line in enumerate(lines)]
    return out


def commands(path: Path) -> list[tuple[int, str]]:
    """The releasegate commands in ``path``, continuation lines joined, comments and shell syntax after them cut."""
    found: list[tuple[int, str]] = []
    lines = code_lines(path)
    i = 0
    while i < len(lines):
        number, line = lines[i]
        match = COMMAND.match(line)
        i += 1
        if not match:
            continue
        command = match.group(1)
        while command.rstrip().endswith("\\") and i < len(lines):
            command = command.rstrip()[:-1] + " " + lines[i][1].strip()
            i += 1
        command = re.split(r"\s#\s|\s+(?:\|\||&&|[|;>])\s*|\s+2>", " " + command)[0].strip()
        if not SYNOPSIS.search(command):
            found.append((number, command))
    return found


CASES = [(path, number, command) for path in SOURCES for number, command in commands(path)]


def argv_of(command: str) -> list[str]:
    """The words the shell would pass: an unquoted lone variable is an optional flag (`$DRY_RUN`: empty here), a
    quoted one a value (`--stage "$STAGE"`: a valid stage, anything else a placeholder)."""
    command = re.sub(r"(?<=\s)\$\{?[A-Z_]+\}?(?=\s|$)", "", command)
    words = shlex.split(command)
    return [re.sub(r"\$\{?[A-Z_]+\}?", "pre-deploy" if i and words[i - 1] == "--stage" else "x", word) for i, word in enumerate(words)]


def test_the_guides_show_commands() -> None:
    # The extraction itself must keep finding the commands, or the test below would pass on nothing.
    shown = {path.name for path, _, _ in CASES}
    assert {"ci.md", "on-call.md", "canary-rollouts.md", "github-actions.yml", "gitlab-ci.yml"} <= shown, shown
    assert len(CASES) >= 30


@pytest.mark.parametrize(("path", "number", "command"), CASES, ids=[f"{p.name}:{n}" for p, n, _ in CASES])
def test_every_shown_command_parses(path: Path, number: int, command: str) -> None:
    try:
        build_parser().parse_args(argv_of(command))
    except SystemExit as exc:  # --help
        assert exc.code == 0, command
    except UsageError as exc:
        pytest.fail(f"{path.relative_to(ROOT)}:{number}: `releasegate {command}` is refused by the CLI: {exc}")


@pytest.mark.parametrize("command", ["run --stage post-deploy --target t.yaml --dryrun", "run --stage postdeploy --target t.yaml"])
def test_a_stale_flag_would_be_caught(command: str) -> None:
    with pytest.raises(UsageError):
        build_parser().parse_args(argv_of(command))
