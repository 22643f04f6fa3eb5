"""Assemble docs/hostile.md's table from the rows the hostile cases wrote.

    RELEASEGATE_WRITE_HOSTILE_TABLE=1 .venv/bin/python -m pytest tests/hostile -n 3
    .venv/bin/python tests/hostile/table.py

The table sits between ``<!-- hostile table: begin -->`` and ``<!-- hostile table: end -->``;
the prose around it is kept. Rows come from tests/hostile/rows/*.json (one per case) and are
sorted by family, then case. Without the environment variable the cases instead check that the
document says what they saw (harness.record_row).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import DOC, HEADER, ROWS, Row, render_row  # noqa: E402 - a script run from anywhere

BEGIN, END = "<!-- hostile table: begin -->", "<!-- hostile table: end -->"
FAMILIES = ["HTTP", "TLS", "WebSocket", "Prometheus", "signals"]


def main() -> int:
    rows = [Row(**json.loads(path.read_text(encoding="utf-8"))) for path in sorted(ROWS.glob("*.json"))]
    if not rows:
        print(f"no rows in {ROWS}: run the hostile tests with RELEASEGATE_WRITE_HOSTILE_TABLE=1 first", file=sys.stderr)
        return 1
    rows.sort(key=lambda r: (FAMILIES.index(r.family) if r.family in FAMILIES else len(FAMILIES), r.family, r.case))
    table = "\n".join([BEGIN, HEADER, "|" + "---|" * 8, *map(render_row, rows), END])
    text = DOC.read_text(encoding="utf-8") if DOC.exists() else f"# The gate under hostile targets\n\n{BEGIN}\n{END}\n"
    head, rest = text.split(BEGIN, 1)
    tail = rest.split(END, 1)[1]
    DOC.write_text(head + table + tail, encoding="utf-8")
    print(f"{len(rows)} rows written to {DOC}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
