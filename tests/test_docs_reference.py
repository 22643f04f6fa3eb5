"""docs/reference/ is generated from the registry and the config models; the guides name only real check ids.

A reference that lags the code is worse than none: users copy ids and keys out of it. So the
committed pages must be exactly what ``python -m releasegate.docs_reference`` builds now, and
every check id a guide mentions must be registered (or be a template instance, or a key of a
file format that happens to share a check family's first word, such as ``health.version``).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from releasegate import docs_reference, registry
from releasegate.config import Gates, Target

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "docs" / "reference"
GUIDES = sorted((ROOT / "docs").glob("*.md")) + [ROOT / "README.md"]

FIRST_WORDS = sorted({spec.id.split(".", 1)[0] for spec in registry.CHECKS})
# `security.tls.protocols`, `canary.metric.<name>`, `security.tls.*`: a code span starting with a family's first word.
MENTION = re.compile(r"`((?:" + "|".join(FIRST_WORDS) + r")\.[A-Za-z0-9_.<>*?\[\]-]+)`")
# Files of a report folder whose names begin like an id.
ARTIFACT_SUFFIXES = (".sarif", ".txt", ".json", ".md", ".png", ".yaml", ".html", ".csv")


def test_reference_pages_match_the_generator() -> None:
    # Given the registry, config.py, gates.yaml and the example target as they are now,
    # when the reference is rendered, then the committed pages are identical.
    expected = docs_reference.render_from(ROOT)
    stale = [name for name, text in expected.items() if not (REFERENCE / name).is_file() or (REFERENCE / name).read_text("utf-8") != text]
    assert not stale, (
        f"docs/reference/{', '.join(stale)} out of date with the registry or config models; "
        f"regenerate with `{docs_reference.REGENERATE}` (from the repository root) and commit the result"
    )


def test_checks_md_lists_every_registered_id_and_template() -> None:
    text = (REFERENCE / "checks.md").read_text("utf-8")
    missing = [spec.id for spec in registry.CHECKS if f"`{spec.id}`" not in text]
    missing += [f"{t.id}.<name>" for t in registry.TEMPLATES if f"`{t.id}.<name>`" not in text]
    assert not missing, f"checks.md lacks {missing}; run `{docs_reference.REGENERATE}`"


def _config_key_paths() -> set[str]:
    """Every key path of both file formats, and each of its tails (`infra.process`, `thresholds.infra.min_nofile`, `infra.min_nofile`)."""
    paths: set[str] = set()
    for model in (Gates, Target):
        for key in docs_reference.model_keys(model, {}):
            parts = [part for part in key.path if part not in ("[]", "<key>")]
            paths.update(".".join(parts[i:]) for i in range(len(parts)))
    return paths


def _is_known(mention: str, keys: set[str]) -> bool:
    if registry.is_registered(mention) or registry.select(mention):
        return True  # an id, a dotted prefix or a glob that selects registered checks
    if re.fullmatch(r"[a-z0-9_.]+\.<[a-z_]+>", mention):
        return registry.is_registered(mention.rsplit(".", 1)[0] + ".x")  # a template: canary.metric.<name>
    if mention in keys or mention.endswith(ARTIFACT_SUFFIXES):
        return True
    head, _, field = mention.rpartition(".")
    # An evidence field of a check: `slo.latency.p95_ms`.
    return head in registry.ids() and re.fullmatch(r"[a-z][a-z0-9_]*", field) is not None


def test_every_check_id_the_docs_mention_exists() -> None:
    keys = _config_key_paths()
    unknown = [
        f"{path.relative_to(ROOT)}:{text.count(chr(10), 0, match.start()) + 1}: {match.group(1)}"
        for path in GUIDES
        for text in [path.read_text("utf-8")]
        for match in MENTION.finditer(text)
        if not _is_known(match.group(1), keys)
    ]
    assert not unknown, "docs mention check ids the registry does not know (renamed? a typo?):\n" + "\n".join(unknown)


@pytest.mark.parametrize("mention", ["security.tls.protocol", "health.readines", "canary.metrics.<name>", "business.scenario.<x>.y"])
def test_a_misspelt_id_is_caught(mention: str) -> None:
    assert not _is_known(mention, _config_key_paths())


def test_the_entry_point_reports_stale_pages_without_writing(tmp_path: Path) -> None:
    # Given a checkout whose reference folder holds an edited page,
    (tmp_path / "targets").mkdir()
    (tmp_path / "gates.yaml").write_text((ROOT / "gates.yaml").read_text("utf-8"), "utf-8")
    (tmp_path / "targets" / "staging.example.yaml").write_text((ROOT / "targets" / "staging.example.yaml").read_text("utf-8"), "utf-8")
    assert docs_reference.main(["--root", str(tmp_path)]) == 0
    page = tmp_path / "docs" / "reference" / "checks.md"
    page.write_text("edited by hand\n", "utf-8")
    # when --check runs, it fails and leaves the page alone; a plain run rewrites it.
    assert docs_reference.main(["--root", str(tmp_path), "--check"]) == 1
    assert page.read_text("utf-8") == "edited by hand\n"
    assert docs_reference.main(["--root", str(tmp_path)]) == 0
    assert docs_reference.main(["--root", str(tmp_path), "--check"]) == 0
