"""Fuzzing the three loaders: any input is a model or a ConfigError (exit 3), never another exception.

The target loader (config.load_target), the gates loader (config.load_gates) and the scenario
loader (scenarios.load_folder, and load_scenarios for what a target asks of the folder) read
files a user wrote, or a pipeline templated. Whatever those files hold (random bytes, YAML edge
cases, documents shaped like the real schema but with wrong values in deep places) the loader
either returns a model or raises ConfigError; the CLI maps ConfigError to exit 3. Any other
exception would surface as exit 4 ("internal error") or a traceback.

The documents are built from the models themselves (:func:`shaped`): each key is one the schema
knows (so the fuzzer reaches the deep validators, not only "unknown key"), each value is either
of the field's own shape or junk. Deterministic (derandomize) and bounded (max_examples), so CI
sees the same examples on every run and the file stays well under a minute.
"""

from __future__ import annotations

import shutil
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from releasegate._exceptions import ConfigError
from releasegate.cli import main
from releasegate.config import Gates, Target, load_gates, load_target
from releasegate.scenarios import load_scenarios
from releasegate.scenarios.loader import load_folder
from releasegate.scenarios.model import GoldenSet, Scenario

FUZZ = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
# Environment variables the generated documents may name (auth.token_env, *_env): some set to a
# usable token, some to values the loaders must refuse (short, with a newline), some unset.
ENV = {
    "RG_FUZZ_TOKEN": "fuzz-token-0123456789abcdef",
    "RG_FUZZ_SHORT": "abc",
    "RG_FUZZ_NEWLINE": "fuzz-token-0123456789\nabcdef",
}
ENV_NAMES = [*ENV, "RG_FUZZ_UNSET"]

# Strings worth trying anywhere a string goes: URLs good and broken, paths, patterns, templates,
# check ids, durations, names of the variables above.
INTERESTING = [
    "",
    " ",
    "http://127.0.0.1:9",
    "https://example.test",
    "http://[",
    "http://[::1",
    "ws://127.0.0.1:9/ws",
    "wss://[zz]/",
    "http://u:p@h:99999/",
    "ftp://x",
    "//no-scheme",
    "/healthz",
    "../../etc/passwd",
    "health.liveness",
    "security.*",
    "load.smoke",
    "business.scenario.x",
    "$.id",
    "$[",
    "${run_id}",
    "${",
    "${nope}",
    "(",
    "[a-",
    "primary",
    "second",
    "anonymous",
    "hold",
    "rollback",
    "0640",
    "1.2.0",
    ">=1",
    "2026-13-01",
    "local://",
    "ssh://u:pw@h",
    "docker://x",
    "\x00",
    "\ud800",
    "é" * 3,
    "x" * 300,
    *ENV_NAMES,
]
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(INTERESTING),
)
junk = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)),
    max_leaves=8,
)


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in _models_in(arg)]


def _key_names(model: type[BaseModel], seen: set[type[BaseModel]] | None = None) -> set[str]:
    """Every key the schema knows, at any depth (aliases as written in YAML)."""
    seen = seen if seen is not None else set()
    if model in seen:
        return set()
    seen.add(model)
    names: set[str] = set()
    for name, info in model.model_fields.items():
        names.add(info.alias or name)
        for inner in _models_in(info.annotation):
            names |= _key_names(inner, seen)
    return names


def shaped(annotation: Any, depth: int = 0) -> st.SearchStrategy[Any]:
    """A value of roughly ``annotation``'s shape (sometimes junk), so validation goes deep."""
    if depth > 6:
        return scalars
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return st.one_of(_model_dict(annotation, depth + 1), junk) if depth else _model_dict(annotation, depth + 1)
    if origin is typing.Annotated:
        return shaped(args[0], depth)
    if origin is typing.Literal:
        return st.one_of(st.sampled_from(args), scalars)
    if origin in (typing.Union, types.UnionType):
        return st.one_of(*(shaped(arg, depth) for arg in args))
    if origin in (list, tuple, set, frozenset):
        item = args[0] if args else Any
        return st.lists(shaped(item, depth + 1), max_size=3)
    if origin is dict:
        value = args[1] if len(args) == 2 else Any
        return st.dictionaries(st.one_of(st.sampled_from(INTERESTING), st.text(max_size=8)), shaped(value, depth + 1), max_size=3)
    return st.one_of(scalars, junk) if annotation is Any else scalars


def _model_dict(model: type[BaseModel], depth: int) -> st.SearchStrategy[dict[str, Any]]:
    fields = {(info.alias or name): info.annotation for name, info in model.model_fields.items()}
    known = st.sampled_from(sorted(fields)).flatmap(lambda key: st.tuples(st.just(key), shaped(fields[key], depth)))
    # Mostly the schema's keys; now and then a key from elsewhere in the schema (wrong place).
    stray = st.tuples(st.sampled_from(sorted(ALL_KEYS)), junk)
    return st.lists(st.one_of(known, known, known, stray), max_size=len(fields) + 1).map(dict)


ALL_KEYS = _key_names(Target) | _key_names(Gates) | _key_names(Scenario) | _key_names(GoldenSet)


def dump(data: Any) -> str:
    return yaml.safe_dump(data, allow_unicode=True, sort_keys=False)


# Hand-written YAML edge cases: every one a ConfigError (or a valid model), bounded in time and memory.
LAUGHS = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 10)}]\n" for i in range(8)
)
EDGE_CASES: dict[str, bytes] = {
    "billion-laughs": LAUGHS.encode(),
    "recursive-alias": b"name: &a [*a]\n",
    "python-object-tag": b"name: !!python/object:os.system [echo pwned]\nbase_url: http://127.0.0.1:9\n",
    "python-apply-tag": b"!!python/object/apply:os.system [echo pwned]\n",
    "binary-tag": b"name: !!binary aGVsbG8=\nbase_url: http://127.0.0.1:9\n",
    "set-tag": b"name: !!set {a, b}\n",
    "custom-tag": b"name: !vault |\n  secret\n",
    "huge-int": b"deadline_s: " + b"9" * 5000 + b"\nname: x\nbase_url: http://127.0.0.1:9\n",
    "huge-exponent": b"deadline_s: 1e99999\nprobe: {timeout_s: 1e400}\n",
    "nan": b"deadline_s: .nan\nprobe: {timeout_s: .nan}\nname: .nan\nbase_url: http://127.0.0.1:9\n",
    "negative-inf": b"deadline_s: -.inf\nprobe: {timeout_s: .inf, retry: {timeout_s: .inf}}\n",
    "duplicate-keys": b"name: a\nname: b\nbase_url: http://127.0.0.1:9\n",
    "non-utf8": b"name: \xff\xfe\xfa\nbase_url: http://127.0.0.1:9\n",
    "utf16-bom": "name: x\nbase_url: http://127.0.0.1:9\n".encode("utf-16"),
    "utf8-bom": b"\xef\xbb\xbfname: x\nbase_url: http://127.0.0.1:9\n",
    "tabs": b"name: x\n\tbase_url: http://127.0.0.1:9\n",
    "nul": b"name: x\x00\nbase_url: http://127.0.0.1:9\n",
    "deep-nesting": b"name: " + b"[" * 5000 + b"]" * 5000 + b"\n",
    "deep-mapping": b"a: " + b"{a: " * 3000 + b"1" + b"}" * 3000 + b"\n",
    "complex-key": b"? [a, b]\n: c\n",
    "merge-key": b"base: &b {name: x}\n<<: *b\n",
    "bad-timestamp": b"waivers: [{check: health.deep, justification: because reasons, expires: 2026-13-01}]\n",
    "multi-document": b"name: x\n---\nname: y\n",
    "empty": b"",
    "only-comment": b"# nothing\n",
    "scalar-document": b"just a string\n",
    "list-document": b"- a\n- b\n",
    "bad-escape": b'name: "\\xZZ"\n',
    "unclosed": b"name: [a, b\n",
    "ipv6-base-url": b"name: x\nbase_url: http://[\nauth: {token_env: RG_FUZZ_TOKEN}\n",
    "ipv6-port": b"name: x\nbase_url: http://[::1]:99999\nauth: {token_env: RG_FUZZ_TOKEN}\n",
    "many-values": b"required: [" + b", ".join([b"x"] * 120_000) + b"]\n",
}


@pytest.fixture(autouse=True)
def _fuzz_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("RG_FUZZ_UNSET", raising=False)


def loads_or_config_error(load: Callable[[], object]) -> None:
    """The property: a model, or ConfigError with at least one located, printable problem."""
    try:
        load()
    except ConfigError as exc:
        assert exc.problems
        for problem in exc.problems:
            assert str(problem) and problem.file, problem


def _write(path: Path, content: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, str):
        path.write_text(content, encoding="utf-8", errors="surrogatepass")
    else:
        path.write_bytes(content)
    return path


# --------------------------------------------------------------------------- target and gates


@pytest.mark.parametrize("case", sorted(EDGE_CASES))
def test_yaml_edge_cases_are_models_or_configuration_errors(tmp_path: Path, case: str) -> None:
    path = _write(tmp_path / "file.yaml", EDGE_CASES[case])

    if case != "many-values":  # 120,000 values take PyYAML seconds to compose: once is enough
        loads_or_config_error(lambda: load_target(path))
    loads_or_config_error(lambda: load_gates(path))


def test_billion_laughs_is_refused_not_expanded(tmp_path: Path) -> None:
    # Given 10^9 values behind nine aliases
    path = _write(tmp_path / "gates.yaml", EDGE_CASES["billion-laughs"])
    # Then loading stops at the value cap with a configuration error saying so
    with pytest.raises(ConfigError, match="alias expansion"):
        load_gates(path)


@pytest.mark.parametrize(("case", "said"), [("python-apply-tag", "tag .*python/object/apply:os.system is not supported"),
    ("python-object-tag", "tag .*python/object:os.system is not supported"), ("set-tag", "tag .*set is not supported")])  # fmt: skip
def test_a_tag_is_never_constructed_nor_dropped(tmp_path: Path, case: str, said: str) -> None:
    # A tag on a scalar has no safe constructor; one on a mapping or list would otherwise be silently dropped.
    path = _write(tmp_path / "target.yaml", EDGE_CASES[case])
    with pytest.raises(ConfigError, match=said):
        load_target(path)


@FUZZ
@given(content=st.binary(max_size=300))
def test_random_bytes(tmp_path: Path, content: bytes) -> None:
    path = _write(tmp_path / "file.yaml", content)
    loads_or_config_error(lambda: load_target(path))
    loads_or_config_error(lambda: load_gates(path))


def _with_required(data: dict[str, Any]) -> dict[str, Any]:
    # name and base_url are required: with them set, validation reaches every other key.
    return {"name": "fuzz", "base_url": "http://127.0.0.1:9", **{k: v for k, v in data.items() if k not in ("name", "base_url")}}


@FUZZ
@given(data=st.one_of(shaped(Target), shaped(Target).map(_with_required)))
def test_target_shaped_documents(tmp_path: Path, data: dict[str, Any]) -> None:
    path = _write(tmp_path / "target.yaml", dump(data))
    loads_or_config_error(lambda: load_target(path))


@FUZZ
@given(data=shaped(Gates))
def test_gates_shaped_documents(tmp_path: Path, data: dict[str, Any]) -> None:
    path = _write(tmp_path / "gates.yaml", dump(data))
    loads_or_config_error(lambda: load_gates(path))


# --------------------------------------------------------------------------- scenarios


@FUZZ
@given(workflow=shaped(Scenario), driver=shaped(Scenario), golden=shaped(GoldenSet))
def test_scenario_folder_shaped_documents(tmp_path: Path, workflow: Any, driver: Any, golden: Any) -> None:
    folder = tmp_path / "scenarios"
    shutil.rmtree(folder, ignore_errors=True)
    _write(folder / "flow.yaml", dump(workflow))
    _write(folder / "drivers" / "drive.yaml", dump(driver))
    _write(folder / "golden" / "set.yaml", dump(golden))
    loads_or_config_error(lambda: load_folder(folder))


@FUZZ
@given(
    sync=shaped(Target.model_fields["sync"].annotation),
    consistency=shaped(Target.model_fields["consistency"].annotation),
    driver=shaped(Scenario),
)
def test_what_a_target_asks_of_its_scenarios(tmp_path: Path, sync: Any, consistency: Any, driver: Any) -> None:
    # The target's sync.setup and consistency.write name drivers: checked across the two files.
    folder = tmp_path / "scenarios"
    shutil.rmtree(folder, ignore_errors=True)
    _write(folder / "drivers" / "drive.yaml", dump(driver))
    target = {"name": "fuzz", "base_url": "http://127.0.0.1:9", "scenarios": "scenarios", "sync": sync, "consistency": consistency}
    path = _write(tmp_path / "target.yaml", dump(target))

    def load() -> None:
        load_scenarios(load_target(path))

    loads_or_config_error(load)


@pytest.mark.parametrize("case", ["python-apply-tag", "non-utf8", "billion-laughs", "ipv6-base-url", "deep-nesting", "random"])
def test_through_the_cli_a_bad_file_is_exit_3_without_a_traceback(tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str) -> None:
    content = EDGE_CASES.get(case, bytes(range(256)))
    path = _write(tmp_path / "file.yaml", content)
    gates = _write(tmp_path / "gates.yaml", "probe: {timeout_s: 1, retry: {timeout_s: 0}}\n")

    assert main(["validate", "--target", str(path), "--gates", str(gates)]) == 3
    assert main(["validate", "--gates", str(path)]) == 3
    report = tmp_path / "report"
    assert main(["run", "--stage", "post-deploy", "--target", str(path), "--gates", str(gates), "--report-dir", str(report)]) == 3
    err = capsys.readouterr().err
    assert "configuration error" in err
    assert "Traceback" not in err and "internal error" not in err
    assert not (report / "verdict.json").exists()
