"""Benchmark: the PostgreSQL restore drill (infra.backup.restore_drill) on a dump of realistic size.

Starts a throw-away PostgreSQL cluster on loopback (tests/postgres_server.py: initdb in a temp
folder, pg_ctl on a free port, removed after), seeds it with the reference service's schema
(conversations, participants, messages, tool runs) at ``--messages`` rows of messages (default
100,000; 40 messages per conversation; texts of 1-12 distinct md5 hex words, so the dump
compresses like text rather than like repetition), dumps it with ``pg_dump -Fc``, then
measures with the gate's own probe code (``releasegate.probes.backup``):

1. **integrity**: ``pg_restore --list`` plus the full read (``--file=/dev/null``), ``--runs`` times;
2. **the drill**: CREATE DATABASE, ``pg_restore --no-owner --no-privileges``, three sanity queries
   (a row count, a known record, a join), DROP DATABASE, ``--runs`` times: restore, query and total
   seconds against the shipped RTO (gates.yaml ``rto_s: 900``);
3. **the stop**: one drill with an RTO of half the median restore, to show how soon after the RTO a
   stopped drill returns (the scratch database dropped all the same);
4. for scale, the SQLite drill (copy, open, same queries) of the same rows.

The server runs with fsync off (test settings, tests/postgres_server.py): a production restore
writes through to disk and is slower; the figures are the drill's own cost on this machine.

It writes its section into bench/RESULTS.md between markers (``results_file.py``), replacing an
earlier one and keeping the rest of the file; ``make bench`` (``bench/run_all.py``) runs every benchmark.

Run: ``.venv/bin/python bench/restore_drill.py [--messages 100000] [--runs 5]`` or ``make bench``.
"""

from __future__ import annotations

import argparse
import hashlib
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from results_file import Stamp, markers, write_section  # bench/ is on sys.path: the scripts run as files

from releasegate.config import BackupSource, PostgresServer, SanityQuery
from releasegate.probes import backup

REPO = Path(__file__).resolve().parent.parent
DEFAULT_OUTPUT = REPO / "bench" / "RESULTS.md"
BEGIN, END = markers("restore_drill.py")
SHIPPED_RTO_S = 900.0
PER_CONVERSATION = 40
ADMIN_TIMEOUT_S = 10.0

SCHEMA = """
CREATE TABLE conversations (id text PRIMARY KEY, title text NOT NULL, owner text NOT NULL, created_at double precision NOT NULL);
CREATE TABLE participants (conversation_id text NOT NULL REFERENCES conversations, username text NOT NULL,
    added_at double precision NOT NULL, PRIMARY KEY (conversation_id, username));
CREATE TABLE messages (id text PRIMARY KEY, conversation_id text NOT NULL REFERENCES conversations, seq integer NOT NULL,
    author text NOT NULL, text text NOT NULL, created_at double precision NOT NULL);
CREATE INDEX messages_by_conversation ON messages (conversation_id, seq);
CREATE TABLE tool_runs (id text PRIMARY KEY, conversation_id text NOT NULL REFERENCES conversations, tool text NOT NULL,
    code text NOT NULL, requested_by text NOT NULL, status text NOT NULL, result text, created_at double precision NOT NULL,
    started_at double precision, finished_at double precision);
"""


def seed_sql(messages: int) -> str:
    conversations = max(1, messages // PER_CONVERSATION)
    return f"""
INSERT INTO conversations SELECT 'c' || g, 'conversation ' || g, 'user' || (g % 50), 1.7e9 + g FROM generate_series(1, {conversations}) g;
INSERT INTO conversations VALUES ('c-known', 'release plan', 'alice', 1.7e9);
INSERT INTO participants SELECT 'c' || g, 'user' || ((g + k) % 50), 1.7e9 + g
    FROM generate_series(1, {conversations}) g, generate_series(0, 2) k;
INSERT INTO messages SELECT 'm' || g, 'c' || (1 + g % {conversations}), g / {conversations} + 1, 'user' || (g % 50),
    (SELECT string_agg(md5((g * 31 + k)::text), ' ') FROM generate_series(1, 1 + g % 12) k), 1.7e9 + g
    FROM generate_series(1, {messages}) g;
INSERT INTO tool_runs SELECT 'r' || g, 'c' || (1 + g % {conversations}), 'python', 'print(' || g || ')', 'user' || (g % 50),
    'finished', '{{"stdout": "' || g || '"}}', 1.7e9 + g, 1.7e9 + g, 1.7e9 + g + 1 FROM generate_series(1, {messages // 10}) g;
ANALYZE;
"""


def sanity(messages: int) -> list[SanityQuery]:
    return [
        SanityQuery(name="message count", sql="SELECT count(*) FROM messages", equals=str(messages)),
        SanityQuery(
            name="known conversation", sql="SELECT id FROM conversations WHERE title = 'release plan' AND owner = 'alice'", min_rows=1
        ),
        SanityQuery(
            name="messages with their conversation",
            sql="SELECT count(*) FROM messages m JOIN conversations c ON c.id = m.conversation_id",
            equals=str(messages),
        ),
    ]


def spread(values: Sequence[float]) -> str:
    return f"{statistics.median(values):.3f} (min {min(values):.3f}, max {max(values):.3f})"


def sqlite_copy(server_rows: int, path: Path) -> Path:
    """The same rows in SQLite (the reference store's own engine), for the SQLite drill figure."""
    conversations = max(1, server_rows // PER_CONVERSATION)
    db = sqlite3.connect(path)
    db.executescript(
        "CREATE TABLE conversations (id TEXT PRIMARY KEY, title TEXT, owner TEXT, created_at REAL);"
        "CREATE TABLE messages (id TEXT PRIMARY KEY, conversation_id TEXT, seq INTEGER, author TEXT, text TEXT, created_at REAL);"
        "CREATE INDEX messages_by_conversation ON messages (conversation_id, seq);"
    )
    db.executemany(
        "INSERT INTO conversations VALUES (?, ?, ?, ?)",
        ((f"c{g}", f"conversation {g}", f"user{g % 50}", 1.7e9) for g in range(1, conversations + 1)),
    )
    db.execute("INSERT INTO conversations VALUES ('c-known', 'release plan', 'alice', 1.7e9)")
    db.executemany(
        "INSERT INTO messages VALUES (?, ?, ?, ?, ?, ?)",
        (
            (
                f"m{g}",
                f"c{1 + g % conversations}",
                g // conversations + 1,
                f"user{g % 50}",
                " ".join(hashlib.md5(f"{g * 31 + k}".encode()).hexdigest() for k in range(1, 2 + g % 12)),
                1.7e9,
            )
            for g in range(1, server_rows + 1)
        ),
    )
    db.commit()
    db.close()
    return path


def run(args: argparse.Namespace, stamp: Stamp) -> str:
    sys.path.insert(0, str(REPO / "tests"))
    from postgres_server import running_postgres

    queries = sanity(args.messages)
    source = BackupSource(name="bench", kind="postgres", path="app.dump")
    with tempfile.TemporaryDirectory(prefix="releasegate-bench-drill-") as tmp, running_postgres() as pg:
        folder = Path(tmp)
        print(f"seeding {args.messages} messages on 127.0.0.1:{pg.port} ...", file=sys.stderr, flush=True)
        pg.create_database("app")
        started = time.monotonic()
        pg.psql(SCHEMA + seed_sql(args.messages), database="app", timeout_s=600)
        seed_s = time.monotonic() - started
        tables = {
            t: int(pg.psql(f"SELECT count(*) FROM {t}", database="app")) for t in ("conversations", "participants", "messages", "tool_runs")
        }
        db_size = pg.psql("SELECT pg_size_pretty(pg_database_size('app'))", database="app").strip()
        started = time.monotonic()
        dump = pg.dump("app", folder / "app.dump", timeout_s=600)
        dump_s = time.monotonic() - started
        server = PostgresServer(host=pg.host, port=pg.port, user=pg.user, bin_dir=str(pg.bin_dir))
        before = pg.databases()

        integrity: list[backup.IntegrityObservation] = []
        for index in range(args.runs):
            checked = backup.integrity_postgres(dump, bin_dir=str(pg.bin_dir), budget_s=SHIPPED_RTO_S)
            if checked.problems or checked.stopped:
                raise RuntimeError(f"integrity check failed on a healthy dump: {checked}")
            integrity.append(checked)
            print(f"  integrity {index + 1}/{args.runs}: {checked.elapsed_s:.3f} s", file=sys.stderr, flush=True)

        drills: list[backup.DrillObservation] = []
        for index in range(args.runs):
            observation = backup.drill_postgres(
                dump, server, queries, password=pg.password, budget_s=SHIPPED_RTO_S, admin_timeout_s=ADMIN_TIMEOUT_S
            )
            finding = backup.judge_drill(source, backup.locate(source, folder), observation, queries, rto_s=SHIPPED_RTO_S)
            if finding.outcome != "passed":
                raise RuntimeError(f"the drill did not pass on a healthy dump: {finding.summary}")
            drills.append(observation)
            print(f"  drill {index + 1}/{args.runs}: {finding.summary}", file=sys.stderr, flush=True)

        restore_median = statistics.median(d.restore_s or 0.0 for d in drills)
        stop_rto = round(restore_median / 2, 3)
        stopped = backup.drill_postgres(dump, server, queries, password=pg.password, budget_s=stop_rto, admin_timeout_s=ADMIN_TIMEOUT_S)
        stop_finding = backup.judge_drill(source, backup.locate(source, folder), stopped, queries, rto_s=stop_rto)
        print(f"  stopped drill: {stop_finding.summary} ({stopped.total_s:.3f} s)", file=sys.stderr, flush=True)
        left_behind = sorted(pg.databases() - before)

        sqlite_path = sqlite_copy(args.messages, folder / "app.db")
        sqlite_queries = [queries[0], queries[1]]
        sqlite_runs = [backup.drill_sqlite(sqlite_path, sqlite_queries, budget_s=SHIPPED_RTO_S) for _ in range(args.runs)]
        sqlite_size = sqlite_path.stat().st_size
        pg_restore_version = backup.run_tool([str(pg.bin_dir / "pg_restore"), "--version"], timeout_s=10).stdout.decode().strip()

        figures = Figures(
            tables=tables,
            db_size=db_size,
            seed_s=seed_s,
            dump_size=dump.stat().st_size,
            dump_s=dump_s,
            integrity=integrity,
            drills=drills,
            stop_rto=stop_rto,
            stopped=stopped,
            stop_summary=stop_finding.summary,
            left_behind=left_behind,
            sqlite_runs=sqlite_runs,
            sqlite_size=sqlite_size,
            version=pg_restore_version,
        )
    return render(args, figures, stamp)


@dataclass(frozen=True)
class Figures:
    tables: dict[str, int]
    db_size: str
    seed_s: float
    dump_size: int
    dump_s: float
    integrity: list[backup.IntegrityObservation]
    drills: list[backup.DrillObservation]
    stop_rto: float
    stopped: backup.DrillObservation
    stop_summary: str
    left_behind: list[str]
    sqlite_runs: list[backup.DrillObservation]
    sqlite_size: int
    version: str


def render(args: argparse.Namespace, f: Figures, stamp: Stamp) -> str:
    integrity, drills, stopped, sqlite_runs, tables = f.integrity, f.drills, f.stopped, f.sqlite_runs, f.tables
    out: list[str] = [BEGIN, "", "## Restore drill: PostgreSQL dump of a realistic size, restored and queried", ""]
    w = out.append
    w("Generated by `bench/restore_drill.py` (`make bench`); see bench/README.md.")
    w("")
    out.extend(stamp.table([("PostgreSQL", f"{f.version} (throw-away cluster from tests/postgres_server.py: loopback, fsync off)")]))
    w("")
    w("Goal (issue 8): *the PostgreSQL restore drill runs for real and reports its measured restore time against the RTO.*")
    rows = ", ".join(f"{name} {count:,}" for name, count in tables.items())
    w(f"Data: the reference schema with {rows} rows ({f.db_size} on the server; seeded in {f.seed_s:.1f} s).")
    w(f"Dump: `pg_dump -Fc`, {f.dump_size / 1048576:.1f} MiB, taken in {f.dump_s:.2f} s. {args.runs} runs of each step;")
    w("seconds as median (min, max). The gate's own code: `releasegate.probes.backup.integrity_postgres` and `drill_postgres`.")
    w("")
    w("| step | seconds |")
    w("|---|---|")
    w(f"| integrity: `pg_restore --list` + full read to /dev/null | {spread([o.elapsed_s for o in integrity])} |")
    w(f"| drill: CREATE DATABASE + `pg_restore` (restore_s) | {spread([d.restore_s or 0.0 for d in drills])} |")
    w(f"| drill: {len(sanity(args.messages))} sanity queries through psql (queries_s) | {spread([d.queries_s for d in drills])} |")
    total = spread([d.total_s for d in drills])
    w(f"| **drill total (restore + queries), against the shipped RTO of {SHIPPED_RTO_S:g} s** | **{total}** |")
    drop = [t.elapsed_s for d in drills for t in d.tools if "DROP DATABASE" in " ".join(t.command)]
    w(f"| DROP DATABASE afterwards (not part of the RTO) | {spread(drop)} |")
    w("")
    per_query = [
        f"{q.name} {statistics.median(d.queries[i].elapsed_s for d in drills) * 1000:.0f} ms" for i, q in enumerate(drills[0].queries)
    ]
    w(f"- Per sanity query (median): {', '.join(per_query)};")
    w("  each is one `psql` process and connection, which is most of a short query's time.")
    w(
        f"- Stopped at the RTO: a drill with an RTO of {f.stop_rto} s (half the median restore) returned after "
        f'{stopped.total_s:.3f} s, stopped during the {stopped.stopped_in}; verdict: "{f.stop_summary}".'
    )
    left = f.left_behind
    w(f"- Scratch databases left on the server after all {args.runs + 1} drills: {left or 'none'}.")
    w(
        f"- For scale, the SQLite drill (copy to a scratch file, open, 2 of the queries) of the same {args.messages:,} messages "
        f"({f.sqlite_size / 1048576:.1f} MiB file): total {spread([d.total_s for d in sqlite_runs])} s."
    )
    w("- fsync is off on the bench server: a production restore writes through to disk, so expect it slower there; the")
    w("  drill's overhead over pg_restore itself (CREATE, psql per query, DROP) is what these figures show precisely.")
    w("")
    out.append(END)
    return "\n".join(out) + "\n"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--messages", type=int, default=100_000, help="rows of messages (default 100000)")
    parser.add_argument("--runs", type=int, default=5, help="runs of the integrity check and of the drill (default 5)")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="file to write the section into (default bench/RESULTS.md)")
    args = parser.parse_args(argv)
    if args.messages < 100 or args.runs < 1:
        parser.error("--messages must be >= 100, --runs >= 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        section = run(args, Stamp.start())
    except BaseException as exc:
        # The harness skips without the PostgreSQL binaries (and fails under RELEASEGATE_REQUIRE_REAL=1, as
        # `make bench` runs it). Nothing measured is not a result: say so and exit non-zero, file untouched.
        if type(exc).__name__ in {"Skipped", "Failed"}:
            print(f"restore_drill.py: {exc}; nothing measured, {args.output} left as it was", file=sys.stderr)
            return 3
        raise
    write_section(args.output, section, BEGIN, END)
    print(section)
    print(f"written to {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
