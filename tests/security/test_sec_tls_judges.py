"""The TLS judges on hand-built scans (plain dataclasses: no sslyze, no network)."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from releasegate._exceptions import ProbeError
from releasegate.probes import tls
from releasegate.probes.tls import AcceptedSuite, Leaf, ScanFailed, TlsScan, TrustCheck, Weaknesses
from releasegate.results import Finding

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
AEAD12 = (
    AcceptedSuite("TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", "ecdh", "X25519", 253),
    AcceptedSuite("TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384", "ecdh", "X25519", 253),
    AcceptedSuite("TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256", "ecdh", "X25519", 253),
)
TLS13 = (
    AcceptedSuite("TLS_AES_128_GCM_SHA256", "ecdh", "X25519", 253),
    AcceptedSuite("TLS_AES_256_GCM_SHA384", "ecdh", "X25519", 253),
    AcceptedSuite("TLS_CHACHA20_POLY1305_SHA256", "ecdh", "X25519", 253),
)
CBC = AcceptedSuite("TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA", "ecdh", "X25519", 253)
TRUSTED = (TrustCheck("Mozilla", False, "validation failed: candidates exhausted"), TrustCheck(tls.SUPPLIED_CA_STORE, True))


def leaf(*, days_left: float = 89, lifespan: int = 90, names: tuple[str, ...] = ("localhost", "127.0.0.1"), **changes: object) -> Leaf:
    not_after = NOW + timedelta(days=days_left)
    base = Leaf(
        subject="CN=localhost",
        issuer="CN=releasegate local CA",
        not_before=not_after - timedelta(days=lifespan),
        not_after=not_after,
        key_type="ecdsa",
        key_bits=256,
        key_curve="secp256r1",
        signature="ecdsa-with-SHA256",
        names=names,
        trust=TRUSTED,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def healthy_scan(**changes: object) -> TlsScan:
    base = TlsScan(
        host="localhost",
        ip="127.0.0.1",
        port=8443,
        versions={"SSLv2": (), "SSLv3": (), "TLSv1.0": (), "TLSv1.1": (), "TLSv1.2": AEAD12, "TLSv1.3": TLS13},
        curves=("X25519", "secp256r1", "secp384r1"),
        leaves=(leaf(),),
        weaknesses=Weaknesses(),
        duration_s=0.4,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def versions(**override: tuple[AcceptedSuite, ...]) -> dict[tls.TlsVersion, tuple[AcceptedSuite, ...]]:
    """The healthy versions, with some replaced: TLSv1_0=(...) stands for TLSv1.0."""
    found = dict(healthy_scan().versions)
    by_key = {v.replace(".", "_"): v for v in tls.VERSIONS}
    found.update({by_key[k]: v for k, v in override.items()})
    return found


@pytest.fixture(scope="module")
def intermediate() -> tls.TlsProfile:
    return tls.load_profile("intermediate", base_dir=None)


FAILED = ScanFailed("localhost", 8443, "cannot connect over TLS: connection refused", 0.1)


# --------------------------------------------------------------------------- protocols


def test_protocols_pass_with_tls12_and_tls13_only() -> None:
    finding = tls.judge_protocols(healthy_scan())
    assert finding.outcome == "passed"
    assert finding.observed == {"accepted": ["TLSv1.2", "TLSv1.3"]}


@pytest.mark.parametrize("legacy", ["SSLv2", "SSLv3", "TLSv1.0", "TLSv1.1"])
def test_any_legacy_version_fails(legacy: str) -> None:
    scan = healthy_scan(versions=versions(**{legacy.replace(".", "_"): (CBC,)}))
    finding = tls.judge_protocols(scan)
    assert finding.outcome == "failed"
    assert legacy in finding.summary


def test_missing_tls12_fails_and_missing_tls13_warns() -> None:
    assert tls.judge_protocols(healthy_scan(versions=versions(TLSv1_2=()))).outcome == "failed"
    finding = tls.judge_protocols(healthy_scan(versions=versions(TLSv1_3=())))
    assert (finding.outcome, finding.summary) == ("warned", "TLSv1.3 not offered (TLSv1.2 only)")


def test_a_tls13_only_profile_does_not_ask_for_tls12() -> None:
    assert tls.judge_protocols(healthy_scan(versions=versions(TLSv1_2=())), require_tls12=False).outcome == "passed"


def test_protocols_cannot_judge_a_version_that_was_not_scanned() -> None:
    found = versions()
    del found["TLSv1.1"]
    finding = tls.judge_protocols(healthy_scan(versions=found, errors={"tls_1_1_cipher_suites": "CONNECTIVITY_ISSUE: reset"}))
    assert finding.outcome == "error"
    assert finding.evidence["missing"] == {"tls_1_1_cipher_suites": "CONNECTIVITY_ISSUE: reset"}


@pytest.mark.parametrize("judge", ["protocols", "ciphers", "certificate"])
def test_a_failed_scan_is_an_error_for_every_tls_check(judge: str, intermediate: tls.TlsProfile) -> None:
    finding = {
        "protocols": lambda: tls.judge_protocols(FAILED),
        "ciphers": lambda: tls.judge_ciphers(FAILED, intermediate),
        "certificate": lambda: tls.judge_certificate(FAILED, now=NOW, min_days=14, warn_days=30, max_lifespan_days=398),
    }[judge]()
    assert finding.outcome == "error"
    assert "connection refused" in finding.summary


# --------------------------------------------------------------------------- ciphers


def test_mozilla_intermediate_suites_pass(intermediate: tls.TlsProfile) -> None:
    finding = tls.judge_ciphers(healthy_scan(), intermediate)
    assert finding.outcome == "passed", finding.summary
    json.dumps(finding.evidence)


def test_cbc_and_static_rsa_on_tls12_fail_with_the_reason(intermediate: tls.TlsProfile) -> None:
    static_rsa = AcceptedSuite("TLS_RSA_WITH_AES_128_GCM_SHA256")
    finding = tls.judge_ciphers(healthy_scan(versions=versions(TLSv1_2=(*AEAD12, CBC, static_rsa))), intermediate)
    assert finding.outcome == "failed"
    issue = finding.evidence["issues"]["TLSv1.2 suites"]
    assert "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA (CBC)" in issue
    assert "TLS_RSA_WITH_AES_128_GCM_SHA256 (static RSA, no forward secrecy)" in issue


def test_legacy_versions_are_left_to_the_protocols_check(intermediate: tls.TlsProfile) -> None:
    # Given a server that adds TLS 1.0 with CBC suites but keeps TLS 1.2 clean
    scan = healthy_scan(versions=versions(TLSv1_0=(CBC,), TLSv1_1=(CBC,)))
    # Then the cipher check passes (security.tls.protocols fails it) and says so
    finding = tls.judge_ciphers(scan, intermediate)
    assert finding.outcome == "passed"
    assert "security.tls.protocols" in finding.evidence["not_judged_here"]


def test_the_legacy_suites_on_tls12_only_warn_while_legacy_versions_are_on(intermediate: tls.TlsProfile) -> None:
    # Given TLS 1.0 on, whose CBC suite OpenSSL (nginx) then offers on TLS 1.2 as well
    finding = tls.judge_ciphers(healthy_scan(versions=versions(TLSv1_0=(CBC,), TLSv1_2=(*AEAD12, CBC))), intermediate)
    # Then it warns here (the protocols check fails the root cause)
    assert finding.outcome == "warned"
    assert CBC.name in finding.evidence["warnings"]["TLSv1.2 legacy suites"]
    # But a suite that TLS 1.0 does not use still fails
    static_rsa = AcceptedSuite("TLS_RSA_WITH_AES_128_GCM_SHA256")
    scan = healthy_scan(versions=versions(TLSv1_0=(CBC,), TLSv1_2=(*AEAD12, CBC, static_rsa)))
    assert tls.judge_ciphers(scan, intermediate).outcome == "failed"


def test_tls12_under_a_tls13_only_profile_fails() -> None:
    modern = tls.load_profile("modern", base_dir=None)
    finding = tls.judge_ciphers(healthy_scan(), modern)
    assert finding.outcome == "failed"
    assert "TLSv1.2 accepted" in finding.evidence["issues"]


def test_extra_curves_and_small_dh_fail(intermediate: tls.TlsProfile) -> None:
    dhe = AcceptedSuite("TLS_DHE_RSA_WITH_AES_128_GCM_SHA256", "dh", None, 1024)
    scan = healthy_scan(curves=("X25519", "secp256r1", "X448", "secp521r1"), versions=versions(TLSv1_2=(*AEAD12, dhe)))
    issues = tls.judge_ciphers(scan, intermediate).evidence["issues"]
    assert "X448" in issues["curves"] and "secp521r1" in issues["curves"]
    assert issues["dh size"] == "smallest DH group 1024 bits, profile minimum 2048"


def test_certificate_key_out_of_profile_fails_but_trust_and_dates_are_not_judged_here(intermediate: tls.TlsProfile) -> None:
    untrusted_expired = leaf(days_left=-3, trust=(TrustCheck("Mozilla", False, "expired"),))
    assert tls.judge_ciphers(healthy_scan(leaves=(untrusted_expired,)), intermediate).outcome == "passed"
    small_rsa = leaf(key_type="rsa", key_bits=1024, key_curve=None, signature="sha256WithRSAEncryption")
    finding = tls.judge_ciphers(healthy_scan(leaves=(small_rsa,)), intermediate)
    assert finding.evidence["issues"]["certificate rsa size"] == "1024 bits, profile minimum 2048"


@pytest.mark.parametrize(
    ("weakness", "key"),
    [
        (Weaknesses(heartbleed=True), "heartbleed"),
        (Weaknesses(ccs_injection=True), "ccs injection"),
        (Weaknesses(robot="VULNERABLE_STRONG_ORACLE"), "robot"),
        (Weaknesses(secure_renegotiation=False), "insecure renegotiation"),
        (Weaknesses(compression=True), "compression"),
        (Weaknesses(fallback_scsv=False), "no fallback scsv"),
        (Weaknesses(extended_master_secret=False), "no extended master secret"),
    ],
)
def test_each_known_weakness_fails_and_is_named(weakness: Weaknesses, key: str, intermediate: tls.TlsProfile) -> None:
    finding = tls.judge_ciphers(healthy_scan(weaknesses=weakness), intermediate)
    assert finding.outcome == "failed"
    assert list(finding.evidence["issues"]) == [key]


def test_weak_robot_oracle_and_client_renegotiation_warn(intermediate: tls.TlsProfile) -> None:
    scan = healthy_scan(weaknesses=Weaknesses(robot="VULNERABLE_WEAK_ORACLE", client_renegotiation_dos=True))
    finding = tls.judge_ciphers(scan, intermediate)
    assert finding.outcome == "warned"
    assert set(finding.evidence["warnings"]) == {"robot", "client renegotiation"}


def test_ciphers_cannot_judge_without_every_command(intermediate: tls.TlsProfile) -> None:
    finding = tls.judge_ciphers(healthy_scan(weaknesses=Weaknesses(heartbleed=None)), intermediate)
    assert finding.outcome == "error"
    assert "heartbleed" in finding.summary
    assert tls.judge_ciphers(healthy_scan(curves=None), intermediate).outcome == "error"


# --------------------------------------------------------------------------- certificate


def judge_cert(*leaves: Leaf, host: str = "localhost") -> Finding:
    return tls.judge_certificate(healthy_scan(leaves=leaves, host=host), now=NOW, min_days=14, warn_days=30, max_lifespan_days=398)


def test_a_certificate_trusted_by_the_supplied_ca_passes() -> None:
    finding = judge_cert(leaf())
    assert finding.outcome == "passed"
    assert finding.observed == {"days_left": 89, "trusted_by": [tls.SUPPLIED_CA_STORE], "names": ["localhost", "127.0.0.1"]}
    assert "validation_errors" not in finding.evidence["leaves"][0]  # the public stores' refusals are noise when trusted


def test_expired_fails() -> None:
    finding = judge_cert(leaf(days_left=-1, trust=(TrustCheck(tls.SUPPLIED_CA_STORE, False, "cert is not valid at validation time"),)))
    assert finding.outcome == "failed"
    assert "expired 1 day(s) ago" in finding.summary


def test_days_left_below_min_fails_and_below_warn_warns() -> None:
    five = judge_cert(leaf(days_left=5.04))
    assert (five.outcome, five.summary) == ("failed", "certificate expires in 5 day(s), fewer than 14")
    assert judge_cert(leaf(days_left=20)).outcome == "warned"


def test_wrong_host_fails_naming_both_names() -> None:
    wrong = leaf(names=("wrong-host.example.test",), trust=(TrustCheck(tls.SUPPLIED_CA_STORE, False, "leaf is not valid for localhost"),))
    finding = judge_cert(wrong)
    assert finding.outcome == "failed"
    assert finding.summary == "certificate names wrong-host.example.test, not localhost"


def test_untrusted_chain_fails_with_the_supplied_ca_error_first() -> None:
    untrusted = leaf(trust=(TrustCheck("Apple", False, "candidates exhausted"), TrustCheck(tls.SUPPLIED_CA_STORE, False, "unknown issuer")))
    finding = judge_cert(untrusted)
    assert finding.outcome == "failed"
    assert "Supplied CA file: unknown issuer" in finding.summary
    assert set(finding.evidence["leaves"][0]["validation_errors"]) == {"Apple", tls.SUPPLIED_CA_STORE}


def test_long_lifespan_only_warns() -> None:
    finding = judge_cert(leaf(lifespan=825, days_left=300))
    assert finding.outcome == "warned"
    assert "lifespan 825 days" in finding.summary


def test_every_leaf_is_judged() -> None:
    rsa = leaf(key_type="rsa", key_bits=2048, key_curve=None, subject="CN=rsa", days_left=3)
    finding = judge_cert(leaf(), rsa)
    assert finding.outcome == "failed"
    assert finding.summary.startswith("CN=rsa expires in 3 day(s)")
    assert finding.observed["days_left"] == 3


def test_no_certificate_is_an_error() -> None:
    finding = tls.judge_certificate(
        healthy_scan(leaves=None, errors={"certificate_info": "BUG_IN_SSLYZE: boom"}),
        now=NOW,
        min_days=14,
        warn_days=30,
        max_lifespan_days=398,
    )
    assert finding.outcome == "error"
    assert finding.evidence["missing"] == {"certificate_info": "BUG_IN_SSLYZE: boom"}


@pytest.mark.parametrize(
    ("host", "names", "match"),
    [
        ("localhost", ("LOCALHOST",), True),
        ("api.example.test", ("*.example.test",), True),
        ("a.b.example.test", ("*.example.test",), False),
        ("127.0.0.1", ("localhost", "127.0.0.1"), True),
        ("::1", ("0:0:0:0:0:0:0:1",), True),
        ("127.0.0.1", ("localhost",), False),
    ],
)
def test_names_match(host: str, names: tuple[str, ...], match: bool) -> None:
    assert tls.names_match(host, names) is match


# --------------------------------------------------------------------------- profiles


@pytest.mark.parametrize("name", ["modern", "intermediate", "old"])
def test_bundled_profiles_load(name: str) -> None:
    profile = tls.load_profile(name, base_dir=None)
    assert profile.name == f"mozilla-{name}"
    assert "TLSv1.3" in profile.versions
    assert ("TLSv1.0" in profile.versions) is (name == "old")


def test_a_custom_profile_resolves_against_the_gates_folder(tmp_path: Path) -> None:
    # Given a custom profile: intermediate plus one CBC suite, next to gates.yaml
    document = json.loads(tls.mozilla_profile_path().read_text(encoding="utf-8"))["configurations"]["intermediate"]
    document["ciphers"]["iana"].append(CBC.name)
    (tmp_path / "profile.json").write_text(json.dumps(document), encoding="utf-8")
    # Then it is found relative to that folder, and the CBC suite passes under it
    profile = tls.load_profile("profile.json", base_dir=tmp_path)
    assert tls.judge_ciphers(healthy_scan(versions=versions(TLSv1_2=(*AEAD12, CBC))), profile).outcome == "passed"


def test_an_unreadable_profile_is_a_probe_error(tmp_path: Path) -> None:
    with pytest.raises(ProbeError, match="cannot read the TLS profile"):
        tls.load_profile("missing.json", base_dir=tmp_path)
    (tmp_path / "bad.json").write_text('{"tls_versions": []}', encoding="utf-8")
    with pytest.raises(ProbeError, match="not a Mozilla TLS configuration"):
        tls.load_profile("bad.json", base_dir=tmp_path)
