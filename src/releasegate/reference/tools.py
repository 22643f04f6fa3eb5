"""The tools a conversation can run on a code snippet: ``lint``, ``format`` and ``test``.

Pure text functions, deterministic and safe: user code is never executed, imported or compiled.
``test`` only counts what a test run would find (test functions and asserts), which is enough for
the gate to see a job go through the worker queue and come back with a recognisable result.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, Literal, get_args

ToolName = Literal["lint", "format", "test"]
TOOLS: tuple[str, ...] = get_args(ToolName)
MAX_LINE = 100  # lint's long-line threshold
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ASSIGN = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*=(?!=)")
_IMPORT = re.compile(r"^\s*(?:from\s+\S+\s+)?import\s+(.+)$")


def lint(code: str) -> dict[str, Any]:
    """Simple rules: long lines, tabs, trailing whitespace, names assigned or imported but never used."""
    issues: list[dict[str, Any]] = []
    lines = code.splitlines()
    for number, line in enumerate(lines, start=1):
        if len(line) > MAX_LINE:
            issues.append({"line": number, "code": "E501", "message": f"line too long ({len(line)} > {MAX_LINE})"})
        if "\t" in line:
            issues.append({"line": number, "code": "W191", "message": "indentation contains tabs"})
        if line != line.rstrip():
            issues.append({"line": number, "code": "W291", "message": "trailing whitespace"})
    defined: dict[str, int] = {}
    for number, line in enumerate(lines, start=1):
        if match := _ASSIGN.match(line):
            defined.setdefault(match.group(1), number)
        elif match := _IMPORT.match(line):
            for part in match.group(1).split(","):
                name = part.split(" as ")[-1].strip().split(".")[0]
                if _NAME.fullmatch(name):
                    defined.setdefault(name, number)
    for name, number in defined.items():
        uses = sum(1 for token in _NAME.findall(code) if token == name)
        if uses <= 1 and not name.startswith("_"):
            issues.append({"line": number, "code": "F841", "message": f"'{name}' is defined but never used"})
    issues.sort(key=lambda issue: (issue["line"], issue["code"]))
    return {"ok": not issues, "issues": issues}


def format_code(code: str) -> dict[str, Any]:
    """Normalise whitespace: tabs to four spaces, no trailing blanks, at most two blank lines, one final newline."""
    out: list[str] = []
    blank = 0
    for line in code.expandtabs(4).splitlines():
        line = line.rstrip()
        blank = blank + 1 if not line else 0
        if blank <= 2:
            out.append(line)
    while out and not out[-1]:
        out.pop()
    formatted = "\n".join(out) + "\n" if out else ""
    return {"changed": formatted != code, "code": formatted}


def count_tests(code: str) -> dict[str, Any]:
    """What a test run would collect: ``def test_*`` functions and ``assert`` statements (nothing runs)."""
    tests = re.findall(r"^\s*(?:async\s+)?def\s+(test_\w*)\s*\(", code, re.MULTILINE)
    asserts = len(re.findall(r"^\s*assert\b", code, re.MULTILINE))
    return {"collected": len(tests), "tests": tests, "asserts": asserts, "executed": False}


RUNNERS: dict[str, Callable[[str], dict[str, Any]]] = {"lint": lint, "format": format_code, "test": count_tests}


def run_tool(tool: str, code: str) -> dict[str, Any]:
    return {"tool": tool, **RUNNERS[tool](code)}
