"""`make bench` (bench/run_all.py): every benchmark, no quiet skips, no stale figures mixed with new ones.

The benchmarks themselves take half an hour and measure speed, so they are not run here; the runner's
promises are: it runs every script in bench/, it stops before measuring when a peer is missing, it
replaces RESULTS.md only when every benchmark succeeded, and it states each peer as ours / peer.
"""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))  # the bench scripts import each other as files, as `make bench` runs them

import run_all  # noqa: E402

LIBRARIES = {"results_file.py", "run_all.py"}  # shared code, not benchmarks


def test_every_benchmark_script_is_run_by_make_bench() -> None:
    scripts = {path.name for path in BENCH.glob("*.py")} - LIBRARIES
    assert scripts == {bench.script for bench in run_all.BENCHMARKS}, "a script in bench/ that make bench would never run"


def test_a_missing_peer_stops_the_run_before_anything_is_measured(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a machine without wrk (every other peer present)
    monkeypatch.setattr(run_all.Requirement, "installed", lambda self: self.package != "wrk")
    ran: list[object] = []
    monkeypatch.setattr(run_all, "run", lambda *args, **kwargs: ran.append(args) or 0)

    code = run_all.main([])

    # Then nothing ran, exit 3, and the message says what to install and how
    assert (code, ran) == (3, [])
    err = capsys.readouterr().err
    assert "wrk (Debian package wrk), for load_generator.py" in err
    assert "make bench-deps" in err and "apt-get install wrk" in err


def fake_benchmark(folder: Path, name: str, *, exit_code: int, peer: tuple[float, float] | None = None) -> run_all.Benchmark:
    """A script that writes its own section into --output, as the real ones do, and may record a peer."""
    record = f"record_peer('{name}', 'wall s', {peer[0]}, 'peer-of-{name}', {peer[1]}, unit='s', note='same target')" if peer else "pass"
    (folder / f"{name}.py").write_text(
        textwrap.dedent(
            f"""
            import sys
            from pathlib import Path
            sys.path.insert(0, {str(BENCH)!r})
            from results_file import markers, record_peer, write_section
            output = Path(sys.argv[sys.argv.index("--output") + 1])
            begin, end = markers("{name}.py")
            write_section(output, begin + "\\n## {name} figures\\n" + end + "\\n", begin, end)
            {record}
            sys.exit({exit_code})
            """
        ),
        encoding="utf-8",
    )
    return run_all.Benchmark(f"{name}.py", "issue 0", (), 60)


def test_a_failing_benchmark_leaves_results_md_as_it_was(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given RESULTS.md from an earlier run, and two benchmarks of which the second fails
    monkeypatch.setattr(run_all, "BENCH", tmp_path)
    results = tmp_path / "RESULTS.md"
    results.write_text("# the earlier run's figures\n", encoding="utf-8")
    benchmarks = [fake_benchmark(tmp_path, "first", exit_code=0), fake_benchmark(tmp_path, "second", exit_code=1)]

    # When make bench runs them
    code = run_all.run(benchmarks, results, quick=False)

    # Then it fails, and no new figure is mixed with the old ones
    assert code == 1
    assert results.read_text(encoding="utf-8") == "# the earlier run's figures\n"


def test_a_complete_run_writes_the_machine_every_section_and_the_peers_as_ratios(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(run_all, "BENCH", tmp_path)
    results = tmp_path / "RESULTS.md"
    results.write_text("# the earlier run's figures\n", encoding="utf-8")
    benchmarks = [fake_benchmark(tmp_path, "first", exit_code=0, peer=(4.0, 25.0)), fake_benchmark(tmp_path, "second", exit_code=0)]

    assert run_all.run(benchmarks, results, quick=False) == 0

    text = results.read_text(encoding="utf-8")
    assert "earlier run" not in text
    assert "| CPUs (usable of all) |" in text and "| date (UTC) |" in text and "| git commit |" in text
    assert text.index("## first figures") < text.index("## second figures")
    # ours 4.0 s against the peer's 25.0 s: 0.16, and for a time lower is better
    assert "| first | wall s | 4.00 | peer-of-first | 25.00 | **0.16** | lower | same target |" in text


def test_the_peers_table_says_which_way_is_better(tmp_path: Path) -> None:
    peers = tmp_path / "peers.jsonl"
    rows = [
        {"benchmark": "load", "measure": "requests/s", "ours": 900.0, "peer_name": "locust", "peer": 1000.0, "unit": "/s", "note": ""},
        {"benchmark": "tls", "measure": "wall s", "ours": 2.0, "peer_name": "testssl.sh", "peer": 20.0, "unit": "s", "note": ""},
    ]
    peers.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")

    table = "\n".join(run_all.peers_table(peers))

    assert "| load | requests/s | 900 | locust | 1,000 | **0.90** | higher |" in table
    assert "| tls | wall s | 2.00 | testssl.sh | 20.00 | **0.10** | lower |" in table
