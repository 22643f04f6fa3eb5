"""Load goes only where the target allows it: loopback always, any other host only when load.allowed_hosts lists it.

The rule (releasegate.load.safety) is by *host name as written*, before any name is resolved:
``localhost``, ``*.localhost``, 127.0.0.0/8 and ::1 are loopback; anything else must be listed. So a
name that resolves to loopback (this machine's own host name, from /etc/hosts) is still refused
unless listed. That is the edge these cases use to prove "no request was sent": a real server
listens on 127.0.0.1, the target names it by a host name that resolves there, and the server's
request log must stay empty.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from loopback import Route, serve
from releasegate._exceptions import ConfigError
from releasegate.cli import main
from releasegate.load.safety import allowed, refuse_unless_allowed

GATES = "deadline_s: 120\nprobe: {timeout_s: 2, retry: {timeout_s: 0}}\n"


def loopback_alias() -> str:
    """A host name, not spelled as loopback, that this machine resolves to 127.0.0.1 (its own name)."""
    name = socket.gethostname()
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(name, None, socket.AF_INET)}
    except OSError:
        addresses = set()
    if not name or "localhost" in name or addresses != {"127.0.0.1"}:
        pytest.skip(f"this machine's host name {name!r} does not resolve to 127.0.0.1 only ({sorted(addresses)})")
    return name


@pytest.fixture
def server() -> object:
    with serve({"/": Route(200, "ok"), "/api/v1/me": Route(200, {"username": "x"})}) as running:
        yield running


def write(tmp_path: Path, text: str) -> tuple[Path, Path]:
    target, gates = tmp_path / "target.yaml", tmp_path / "gates.yaml"
    target.write_text(text, encoding="utf-8")
    gates.write_text(GATES, encoding="utf-8")
    return target, gates


@pytest.mark.parametrize(
    ("url", "listed"),
    [
        pytest.param("http://{alias}:{port}", [], id="resolves-to-loopback-not-listed"),
        pytest.param("http://{ALIAS}:{port}", ["staging.example.test"], id="upper-case-other-host-listed"),
        pytest.param("http://localhost@{alias}:{port}", ["localhost"], id="userinfo-says-localhost"),
        pytest.param("http://{alias}.:{port}", [], id="trailing-dot"),
        pytest.param("http://{alias}:{port}#@127.0.0.1", [], id="fragment-says-loopback"),
    ],
)
def test_releasegate_load_refuses_an_unlisted_host_with_exit_3_before_any_request(
    tmp_path: Path, server: object, capsys: pytest.CaptureFixture[str], url: str, listed: list[str]
) -> None:
    # Given a live server on 127.0.0.1, named by a host name that resolves there but is not allowed
    alias = loopback_alias()
    base_url = url.format(alias=alias, ALIAS=alias.upper(), port=server.port)  # type: ignore[attr-defined]
    target, gates = write(tmp_path, f"name: elsewhere\nbase_url: {base_url}\nload: {{allowed_hosts: {json.dumps(listed)}}}\n")
    # When `releasegate load` is asked to load it
    code = main(["load", "--profile", "smoke", "--target", str(target), "--gates", str(gates), "--report-dir", str(tmp_path / "r")])
    # Then it is a configuration error naming the host, and nothing reached the server
    err = capsys.readouterr().err
    assert code == 3, err
    assert f"'{alias.lower()}" in err and "neither loopback nor in load.allowed_hosts" in err and "no request was sent" in err
    assert "Traceback" not in err
    assert server.requests == []  # type: ignore[attr-defined]
    assert not (tmp_path / "r").exists()


def test_the_load_stage_refuses_an_unlisted_host_as_error_and_holds_before_any_request(tmp_path: Path, server: object) -> None:
    alias = loopback_alias()
    target, gates = write(tmp_path, f"name: elsewhere\nbase_url: http://{alias}:{server.port}\nload: {{}}\n")  # type: ignore[attr-defined]

    code = main(["run", "--stage", "load", "--target", str(target), "--gates", str(gates), "--report-dir", str(tmp_path / "g")])

    verdict = json.loads((tmp_path / "g" / "verdict.json").read_text(encoding="utf-8"))
    row = next(row for row in verdict["checks"] if row["id"] == "load.smoke")
    assert (code, verdict["decision"], row["outcome"]) == (2, "hold", "error"), row["summary"]
    assert "neither loopback nor in load.allowed_hosts" in row["summary"]
    assert server.requests == []  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("url", "hosts", "expected"),
    [
        ("http://127.0.0.1:8080", [], True),
        ("http://127.9.9.9", [], True),  # all of 127.0.0.0/8
        ("http://[::1]:8080", [], True),
        ("http://LOCALHOST", [], True),
        ("http://api.localhost", [], True),
        ("http://staging.example.test", ["Staging.Example.Test."], True),  # listed names compare case- and dot-insensitively
        ("http://0.0.0.0:8080", [], False),  # "any address" is not loopback
        ("http://[::ffff:127.0.0.1]", [], False),  # IPv4-mapped: refused (safe side)
        ("http://2130706433", [], False),  # 127.0.0.1 as one number: refused (safe side)
        ("http://127.0.0.1.nip.io", [], False),  # resolves to loopback via DNS: the rule never resolves
        ("http://localhost.example.test", [], False),
        ("http://staging.example.test@evil.example.test", ["staging.example.test"], False),
        ("http://evil.example.test\\@staging.example.test", ["staging.example.test"], False),
        ("http://sub.staging.example.test", ["staging.example.test"], False),  # no implicit subdomains
        ("not a url", ["not a url"], False),
        ("http://", [], False),
    ],
)
def test_the_rule_at_its_edges(url: str, hosts: list[str], expected: bool) -> None:
    assert allowed(url, hosts) is expected
    if not expected:
        with pytest.raises(ConfigError, match="no request was sent"):
            refuse_unless_allowed(url, hosts, target_file="t.yaml")


def test_rate_limit_probes_refuse_an_unlisted_host_before_any_request(tmp_path: Path, server: object) -> None:
    # Given a live server on 127.0.0.1 named by a non-loopback host name that no allowlist names
    alias = loopback_alias()
    target, gates = write(
        tmp_path,
        f"name: elsewhere\nbase_url: http://{alias}:{server.port}\n"  # type: ignore[attr-defined]
        "rate_limit: {path: /api/v1/me, max_probe_requests: 20}\nload: {allowed_hosts: []}\n",
    )
    # When the per-IP rate-limit probe runs
    code = main(
        ["run", "--stage", "pre-deploy", "--target", str(target), "--gates", str(gates), "--report-dir", str(tmp_path / "r"),
         "--only", "security.rate_limit.ip"]
    )  # fmt: skip
    # Then the check is error naming the allowlist, the gate holds, and no burst reached the server
    verdict = json.loads((tmp_path / "r" / "verdict.json").read_text(encoding="utf-8"))
    row = next(c for c in verdict["checks"] if c["id"] == "security.rate_limit.ip")
    assert (code, verdict["decision"], row["outcome"]) == (2, "hold", "error")
    assert "neither loopback nor in load.allowed_hosts; no request was sent" in row["summary"]
    assert server.requests == []  # type: ignore[attr-defined]


def test_rate_limit_probes_go_where_load_allowed_hosts_lets_them(tmp_path: Path, server: object) -> None:
    # Given the same host name, now listed
    alias = loopback_alias()
    target, gates = write(
        tmp_path,
        f"name: listed\nbase_url: http://{alias}:{server.port}\n"  # type: ignore[attr-defined]
        f"rate_limit: {{path: /api/v1/me, max_probe_requests: 5}}\nload: {{allowed_hosts: [{alias}]}}\n",
    )
    main(
        ["run", "--stage", "pre-deploy", "--target", str(target), "--gates", str(gates), "--report-dir", str(tmp_path / "r"),
         "--only", "security.rate_limit.ip"]
    )  # fmt: skip
    # Then the burst was sent (capped): the refusal above is the allowlist's, nothing else's
    assert 0 < len(server.requests) <= 5  # type: ignore[attr-defined]
