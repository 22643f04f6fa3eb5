"""TLS family: protocol versions, cipher suites against a Mozilla profile, and the certificate.

One sslyze scan feeds every TLS check. :func:`scan` runs it (the only code here that touches
sslyze's scanner or the network) and turns sslyze's result objects into the plain frozen
dataclasses below (:class:`TlsScan`, or :class:`ScanFailed` when the scan could not complete),
so the judges (:func:`judge_protocols`, :func:`judge_ciphers`, :func:`judge_certificate`) are
pure functions that tests feed with hand-built scans.

Why sslyze's own Mozilla checker is not called as is: it judges certificate trust against the
public stores only (a private CA would fail every deployment), it pools the suites of every
protocol version (so a legacy protocol would also fail the cipher check), and it stops at its
first missing command. The comparison is redone here on plain data, per version, with the
profile's data read from sslyze's bundled Mozilla JSON (or a custom JSON of the same shape).
"""

from __future__ import annotations

import ipaddress
import json
import math
import re
import socket
import ssl
import threading
import time
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from releasegate._exceptions import ProbeError
from releasegate.results import Finding

if TYPE_CHECKING:  # sslyze is imported lazily: the pure judges (and their tests) must not need it loaded
    from sslyze.scanner.models import ServerScanResult

TlsVersion = Literal["SSLv2", "SSLv3", "TLSv1.0", "TLSv1.1", "TLSv1.2", "TLSv1.3"]
VERSIONS: tuple[TlsVersion, ...] = ("SSLv2", "SSLv3", "TLSv1.0", "TLSv1.1", "TLSv1.2", "TLSv1.3")
LEGACY_VERSIONS: frozenset[TlsVersion] = frozenset({"SSLv2", "SSLv3", "TLSv1.0", "TLSv1.1"})
ProfileName = Literal["modern", "intermediate", "old"]
PROFILE_NAMES: tuple[ProfileName, ...] = ("modern", "intermediate", "old")
# sslyze's attribute (and ScanCommand value) per version.
_VERSION_COMMANDS: dict[TlsVersion, str] = {
    "SSLv2": "ssl_2_0_cipher_suites",
    "SSLv3": "ssl_3_0_cipher_suites",
    "TLSv1.0": "tls_1_0_cipher_suites",
    "TLSv1.1": "tls_1_1_cipher_suites",
    "TLSv1.2": "tls_1_2_cipher_suites",
    "TLSv1.3": "tls_1_3_cipher_suites",
}
# Mozilla's JSON names TLS 1.0 "TLSv1".
_MOZILLA_VERSION: dict[str, TlsVersion] = {
    "SSLv2": "SSLv2",
    "SSLv3": "SSLv3",
    "TLSv1": "TLSv1.0",
    "TLSv1.1": "TLSv1.1",
    "TLSv1.2": "TLSv1.2",
    "TLSv1.3": "TLSv1.3",
}
_WEAKNESS_COMMANDS = (
    "heartbleed",
    "openssl_ccs_injection",
    "robot",
    "session_renegotiation",
    "tls_compression",
    "tls_fallback_scsv",
    "tls_extended_master_secret",
)
CheckNeed = Literal["protocols", "ciphers", "certificate"]
# The scan commands each check needs; the run scans the union for the checks it selected.
COMMANDS_NEEDED: dict[CheckNeed, frozenset[str]] = {
    "protocols": frozenset(_VERSION_COMMANDS.values()),
    "certificate": frozenset({"certificate_info"}),
    # The cipher check also judges the certificate's key and signature against the profile.
    "ciphers": frozenset({*_VERSION_COMMANDS.values(), "elliptic_curves", "certificate_info", *_WEAKNESS_COMMANDS}),
}
SUPPLIED_CA_STORE = "Supplied CA file"  # sslyze's name for the trust store built from custom_ca_file
MAX_LISTED = 20  # bound on names listed in evidence


# --------------------------------------------------------------------------- plain scan data


@dataclass(frozen=True)
class AcceptedSuite:
    """One suite the server accepted; ``kex`` is the ephemeral key exchange, if any."""

    name: str  # IANA name, e.g. TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
    kex: Literal["ecdh", "dh"] | None = None
    kex_curve: str | None = None  # ECDH only, e.g. X25519
    kex_bits: int | None = None  # as OpenSSL reports it (X25519: 253)


@dataclass(frozen=True)
class TrustCheck:
    """Path validation of the served chain against one trust store (hostname included)."""

    store: str
    ok: bool
    error: str | None = None


@dataclass(frozen=True)
class Leaf:
    """A leaf certificate the server presented, and how each trust store judged its chain."""

    subject: str
    issuer: str
    not_before: datetime  # aware, UTC
    not_after: datetime  # aware, UTC
    key_type: str  # "ecdsa" | "rsa" | other key class name (Mozilla's vocabulary)
    key_bits: int
    key_curve: str | None  # SECG name for EC keys, e.g. secp256r1
    signature: str  # e.g. ecdsa-with-SHA256
    names: tuple[str, ...]  # SAN DNS names and IP addresses
    trust: tuple[TrustCheck, ...]

    def days_left(self, now: datetime) -> float:
        return (self.not_after - now).total_seconds() / 86_400

    @property
    def lifespan_days(self) -> int:
        return (self.not_after - self.not_before).days


@dataclass(frozen=True)
class Weaknesses:
    """Known TLS weaknesses; ``None`` where the scan command did not complete."""

    heartbleed: bool | None = False
    ccs_injection: bool | None = False
    robot: str | None = "NOT_VULNERABLE_NO_ORACLE"  # sslyze's RobotScanResultEnum name
    secure_renegotiation: bool | None = True
    client_renegotiation_dos: bool | None = False
    compression: bool | None = False
    fallback_scsv: bool | None = True
    extended_master_secret: bool | None = True


# The Weaknesses field that holds each weakness command's answer.
_WEAKNESS_FIELDS = {
    "heartbleed": "heartbleed",
    "openssl_ccs_injection": "ccs_injection",
    "robot": "robot",
    "session_renegotiation": "secure_renegotiation",
    "tls_compression": "compression",
    "tls_fallback_scsv": "fallback_scsv",
    "tls_extended_master_secret": "extended_master_secret",
}


@dataclass(frozen=True)
class TlsScan:
    """What one completed scan saw. A version, the curves or the certificates are missing
    (absent key / ``None``) when their scan command was not run or failed; ``errors`` says why."""

    host: str
    ip: str
    port: int
    versions: Mapping[TlsVersion, tuple[AcceptedSuite, ...]] = field(default_factory=dict)
    curves: tuple[str, ...] | None = None  # groups accepted for ECDH key exchange
    leaves: tuple[Leaf, ...] | None = None
    weaknesses: Weaknesses = field(default_factory=lambda: Weaknesses(*(None,) * 8))
    errors: Mapping[str, str] = field(default_factory=dict)  # scan command -> why it did not complete
    duration_s: float = 0.0

    def supports(self, version: TlsVersion) -> bool:
        return bool(self.versions.get(version))

    def summary(self) -> dict[str, Any]:
        """Bounded evidence shared by every TLS check."""
        return {
            "server": f"{self.host}:{self.port}",
            "ip": self.ip,
            "scan_s": round(self.duration_s, 3),
            **({"scan_errors": dict(self.errors)} if self.errors else {}),
        }


@dataclass(frozen=True)
class ScanFailed:
    """The scan could not complete (name resolution, connection, TLS handshake, time budget)."""

    host: str
    port: int
    reason: str
    duration_s: float = 0.0


ScanOutcome = TlsScan | ScanFailed


# --------------------------------------------------------------------------- profiles


@dataclass(frozen=True)
class TlsProfile:
    """The parts of a Mozilla server-side TLS profile the cipher check compares against."""

    name: str
    versions: frozenset[TlsVersion]
    tls13_suites: frozenset[str]  # IANA
    suites: frozenset[str]  # IANA names for TLS 1.2 and below
    curves: frozenset[str]  # SECG names
    ecdh_min_bits: int | None
    dh_min_bits: int | None
    rsa_min_bits: int | None
    certificate_types: frozenset[str]
    certificate_curves: frozenset[str]
    certificate_signatures: frozenset[str]


_ANSI_TO_SECG = {"prime256v1": "secp256r1", "prime192v1": "secp192r1"}


def profile_from_mapping(name: str, data: Mapping[str, Any]) -> TlsProfile:
    """A profile from one configuration of Mozilla's JSON (``configurations.<name>``); ValueError if malformed."""
    try:
        return TlsProfile(
            name=name,
            versions=frozenset(_MOZILLA_VERSION[v] for v in data["tls_versions"]),
            tls13_suites=frozenset(data["ciphersuites"]),
            suites=frozenset(data["ciphers"]["iana"]),
            curves=frozenset(_ANSI_TO_SECG.get(c, c) for c in data["tls_curves"]),
            ecdh_min_bits=data.get("ecdh_param_size"),
            dh_min_bits=data.get("dh_param_size"),
            rsa_min_bits=data.get("rsa_key_size"),
            certificate_types=frozenset(data["certificate_types"]),
            certificate_curves=frozenset(_ANSI_TO_SECG.get(c, c) for c in data["certificate_curves"]),
            certificate_signatures=frozenset(data["certificate_signatures"]),
        )
    except (KeyError, TypeError) as exc:
        raise ValueError(f"not a Mozilla TLS configuration: missing or malformed {exc}") from None


def mozilla_profile_path() -> Path:
    """Mozilla's server-side TLS document as bundled with sslyze (5.7.json in 6.3.1).

    Read directly rather than through sslyze's pydantic model, so a custom profile (same shape)
    and the bundled ones go through one mapping, :func:`profile_from_mapping`.
    """
    from sslyze.mozilla_tls_profile.tls_config_checker import MozillaTlsConfiguration

    return Path(MozillaTlsConfiguration._JSON_PROFILE_PATH)


def load_profile(spec: str, *, base_dir: Path | None) -> TlsProfile:
    """``modern`` / ``intermediate`` / ``old`` from sslyze's bundled Mozilla JSON, else a JSON file.

    A file may hold one configuration (the shape of ``sslyze --custom_tls_config``) or Mozilla's
    whole document, whose ``intermediate`` configuration is then used. Relative paths resolve
    against ``base_dir`` (the folder of gates.yaml). Raises ProbeError when it cannot be read.
    """
    if spec in PROFILE_NAMES:
        document = json.loads(mozilla_profile_path().read_text(encoding="utf-8"))
        return profile_from_mapping(f"mozilla-{spec}", document["configurations"][spec])
    path = Path(spec)
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ProbeError(f"cannot read the TLS profile {path}: {exc}") from None
    if isinstance(document, dict) and "configurations" in document:
        document = document["configurations"].get("intermediate")
    if not isinstance(document, dict):
        raise ProbeError(f"TLS profile {path} is not a JSON object")
    try:
        return profile_from_mapping(path.name, document)
    except ValueError as exc:
        raise ProbeError(f"TLS profile {path}: {exc}") from None


# --------------------------------------------------------------------------- judges


def _listed(names: Iterable[str]) -> list[str]:
    items = sorted(names)
    return items[:MAX_LISTED] + ([f"... {len(items) - MAX_LISTED} more"] if len(items) > MAX_LISTED else [])


def _missing(scan: TlsScan, commands: Iterable[str]) -> dict[str, str]:
    return {c: scan.errors.get(c, "not run") for c in sorted(commands) if _absent(scan, c)}


def _absent(scan: TlsScan, command: str) -> bool:
    if command in _VERSION_COMMANDS.values():
        return next(v for v, c in _VERSION_COMMANDS.items() if c == command) not in scan.versions
    if command == "elliptic_curves":
        return scan.curves is None
    if command == "certificate_info":
        return scan.leaves is None
    return getattr(scan.weaknesses, _WEAKNESS_FIELDS[command]) is None


def judge_protocols(scan: ScanOutcome, *, require_tls12: bool = True) -> Finding:
    """SSLv2/3, TLS 1.0 and 1.1 refused; TLS 1.2 offered (unless the profile is TLS 1.3 only); TLS 1.3 missing warns."""
    expected = {"refused": ["SSLv2", "SSLv3", "TLSv1.0", "TLSv1.1"], "offered": ["TLSv1.2", "TLSv1.3"] if require_tls12 else ["TLSv1.3"]}
    if isinstance(scan, ScanFailed):
        return _scan_failed(scan, expected)
    evidence = scan.summary()
    missing = _missing(scan, COMMANDS_NEEDED["protocols"])
    if missing:
        evidence["missing"] = missing
        return Finding("error", f"could not test every protocol version: {', '.join(missing)}", None, expected, evidence)
    accepted = [v for v in VERSIONS if scan.supports(v)]
    evidence["accepted"] = {v: len(scan.versions[v]) for v in accepted}
    observed = {"accepted": accepted}
    legacy = [v for v in accepted if v in LEGACY_VERSIONS]
    problems = [f"{', '.join(legacy)} accepted"] if legacy else []
    if require_tls12 and not scan.supports("TLSv1.2"):
        problems.append("TLSv1.2 not offered")
    if problems:
        return Finding("failed", "; ".join(problems), observed, expected, evidence)
    if not accepted:
        return Finding("failed", "no protocol version accepted", observed, expected, evidence)
    if not scan.supports("TLSv1.3"):
        return Finding("warned", "TLSv1.3 not offered (TLSv1.2 only)", observed, expected, evidence)
    return Finding("passed", f"only {', '.join(accepted)} accepted", observed, expected, evidence)


def judge_ciphers(scan: ScanOutcome, profile: TlsProfile) -> Finding:
    """Suites, curves, key-exchange sizes and certificate key vs the profile; known TLS weaknesses.

    Versions SSLv2 to TLS 1.1 are left to security.tls.protocols, so one fault fails one check.
    So are their suites where TLS 1.2 accepts them too: OpenSSL (and so nginx) has one cipher
    list for every version up to 1.2, so a server that turns TLS 1.0 on necessarily offers its
    CBC suites on 1.2 as well; while a legacy version is on, those suites only warn here (the
    protocols check fails), and they fail here once the legacy versions are off but they stay.
    Certificate trust, dates and lifespan are security.tls.certificate's.
    """
    expected = {
        "profile": profile.name,
        "tls12_suites": _listed(profile.suites),
        "tls13_suites": sorted(profile.tls13_suites),
        "curves": sorted(profile.curves),
        "weaknesses": "none",
    }
    if isinstance(scan, ScanFailed):
        return _scan_failed(scan, expected)
    evidence = scan.summary()
    missing = _missing(scan, COMMANDS_NEEDED["ciphers"])
    if missing:
        evidence["missing"] = missing
        return Finding("error", f"could not complete the cipher scan: {', '.join(missing)}", None, expected, evidence)
    curves, leaves = scan.curves or (), scan.leaves or ()  # both present: checked by _missing above
    issues: dict[str, str] = {}
    warnings_: dict[str, str] = {}
    judged = [v for v in VERSIONS if scan.supports(v) and v not in LEGACY_VERSIONS]
    legacy_suites = {s.name for v in LEGACY_VERSIONS for s in scan.versions.get(v, ())}
    for version in judged:
        if version not in profile.versions:
            issues[f"{version} accepted"] = f"{version} is not in the {profile.name} profile"
            continue
        allowed = profile.tls13_suites if version == "TLSv1.3" else profile.suites
        extra = {s.name for s in scan.versions[version]} - allowed
        if extra - legacy_suites:
            issues[f"{version} suites"] = ", ".join(_describe_suite(name) for name in _listed(extra - legacy_suites))
        if extra & legacy_suites:
            warnings_[f"{version} legacy suites"] = (
                ", ".join(_describe_suite(name) for name in _listed(extra & legacy_suites))
                + " (the TLS 1.0/1.1 suites, offered on TLS 1.2 too; they fail here once TLS 1.0/1.1 are off and they stay)"
            )
    suites = [s for v in judged for s in scan.versions[v]]
    extra_curves = set(curves) - profile.curves
    if extra_curves:
        issues["curves"] = f"key-exchange groups not in {profile.name}: {', '.join(_listed(extra_curves))}"
    # OpenSSL reports X25519 as 253 bits; Mozilla's checker adds 3 to every ECDH size, and so do we.
    ecdh = [s.kex_bits + 3 for s in suites if s.kex == "ecdh" and s.kex_bits is not None]
    dh = [s.kex_bits for s in suites if s.kex == "dh" and s.kex_bits is not None]
    if ecdh and profile.ecdh_min_bits and min(ecdh) < profile.ecdh_min_bits:
        issues["ecdh size"] = f"smallest ECDH key {min(ecdh)} bits, profile minimum {profile.ecdh_min_bits}"
    if dh and profile.dh_min_bits and min(dh) < profile.dh_min_bits:
        issues["dh size"] = f"smallest DH group {min(dh)} bits, profile minimum {profile.dh_min_bits}"
    issues.update(_certificate_key_issues(leaves, profile))
    weak_issues, weak_warnings = _weakness_issues(scan.weaknesses)
    issues.update(weak_issues)
    warnings_.update(weak_warnings)
    legacy = [v for v in VERSIONS if scan.supports(v) and v in LEGACY_VERSIONS]
    if legacy:
        evidence["not_judged_here"] = f"{', '.join(legacy)} and their suites: see security.tls.protocols"
    evidence["suites"] = {v: _listed(s.name for s in scan.versions[v]) for v in judged}
    evidence["curves"] = list(curves)
    evidence["weaknesses"] = dict(vars(scan.weaknesses))
    observed: dict[str, Any] = {"issues": list(issues)} if issues else {"suites": sum(len(scan.versions[v]) for v in judged)}
    if issues:
        evidence["issues"] = issues
        evidence["warnings"] = warnings_
        return Finding("failed", f"not {profile.name}: " + "; ".join(f"{k}: {v}" for k, v in issues.items()), observed, expected, evidence)
    if warnings_:
        evidence["warnings"] = warnings_
        return Finding("warned", "; ".join(f"{k}: {v}" for k, v in warnings_.items()), {"warnings": list(warnings_)}, expected, evidence)
    return Finding(
        "passed",
        f"{sum(len(scan.versions[v]) for v in judged)} suites on {', '.join(judged)} all in {profile.name}; no known weakness",
        observed,
        expected,
        evidence,
    )


def _describe_suite(name: str) -> str:
    """A suite name with why it is weak, when the name says so."""
    reasons = [
        reason
        for pattern, reason in (
            ("TLS_RSA_", "static RSA, no forward secrecy"),
            ("_CBC_", "CBC"),
            ("_3DES_", "3DES"),
            ("_RC4_", "RC4"),
            ("_NULL_", "no encryption"),
            ("_EXPORT", "export grade"),
            ("_anon_", "anonymous"),
        )
        if pattern in name
    ]
    return f"{name} ({', '.join(reasons)})" if reasons else name


def _certificate_key_issues(leaves: tuple[Leaf, ...], profile: TlsProfile) -> dict[str, str]:
    issues: dict[str, str] = {}
    if not leaves:
        return issues
    types = {leaf.key_type for leaf in leaves}
    if profile.certificate_types and not types & profile.certificate_types:
        issues["certificate key type"] = f"{', '.join(sorted(types))}; profile wants one of {', '.join(sorted(profile.certificate_types))}"
    for leaf in leaves:
        if leaf.key_type == "ecdsa" and profile.certificate_curves and leaf.key_curve not in profile.certificate_curves:
            issues["certificate curve"] = f"{leaf.key_curve}; profile allows {', '.join(sorted(profile.certificate_curves))}"
        if leaf.key_type == "rsa" and profile.rsa_min_bits and leaf.key_bits < profile.rsa_min_bits:
            issues["certificate rsa size"] = f"{leaf.key_bits} bits, profile minimum {profile.rsa_min_bits}"
    signatures = {leaf.signature for leaf in leaves}
    if profile.certificate_signatures and not signatures & profile.certificate_signatures:
        issues["certificate signature"] = f"{', '.join(sorted(signatures))} not in the profile"
    return issues


def _weakness_issues(weak: Weaknesses) -> tuple[dict[str, str], dict[str, str]]:
    issues: dict[str, str] = {}
    warned: dict[str, str] = {}
    if weak.heartbleed:
        issues["heartbleed"] = "vulnerable to Heartbleed (CVE-2014-0160)"
    if weak.ccs_injection:
        issues["ccs injection"] = "vulnerable to OpenSSL CCS injection (CVE-2014-0224)"
    if weak.robot == "VULNERABLE_STRONG_ORACLE":
        issues["robot"] = "vulnerable to ROBOT (strong oracle)"
    elif weak.robot == "VULNERABLE_WEAK_ORACLE":
        warned["robot"] = "ROBOT weak oracle"
    if weak.secure_renegotiation is False:
        issues["insecure renegotiation"] = "no secure renegotiation (RFC 5746)"
    if weak.client_renegotiation_dos:
        warned["client renegotiation"] = "client-initiated renegotiation accepted (DoS vector)"
    if weak.compression:
        issues["compression"] = "TLS compression on (CRIME)"
    if weak.fallback_scsv is False:
        issues["no fallback scsv"] = "TLS_FALLBACK_SCSV not honoured (downgrade)"
    if weak.extended_master_secret is False:
        issues["no extended master secret"] = "Extended Master Secret (RFC 7627) not supported"
    return issues, warned


def judge_certificate(
    scan: ScanOutcome, *, now: datetime, min_days: int, warn_days: int, max_lifespan_days: int, hostname: str | None = None
) -> Finding:
    """Every leaf: a trust store (system stores or the target's CA) validates chain and hostname; enough days left.

    Fewer than ``min_days`` left (or expired, or not yet valid) fails; fewer than ``warn_days``
    warns; a lifespan over ``max_lifespan_days`` warns. Trust comes from sslyze's path
    validation (RFC 5280, with the hostname of the SNI), passing when any store validates.
    """
    host = hostname or (scan.host if isinstance(scan, TlsScan | ScanFailed) else "")
    expected = {
        "trusted_by": f"system store or {SUPPLIED_CA_STORE}",
        "hostname": host,
        "days_left": f">= {min_days} (warn < {warn_days})",
        "lifespan_days": f"<= {max_lifespan_days}",
    }
    if isinstance(scan, ScanFailed):
        return _scan_failed(scan, expected)
    evidence = scan.summary()
    if scan.leaves is None or not scan.leaves:
        evidence["missing"] = _missing(scan, COMMANDS_NEEDED["certificate"]) or {"certificate_info": "no certificate received"}
        return Finding("error", "could not read the server certificate", None, expected, evidence)
    failures: list[str] = []
    warns: list[str] = []
    leaves_evidence = []
    for leaf in scan.leaves:
        days = leaf.days_left(now)
        trusted_by = [t.store for t in leaf.trust if t.ok]
        leaves_evidence.append(
            {
                "subject": leaf.subject,
                "issuer": leaf.issuer,
                "key": f"{leaf.key_type} {leaf.key_bits}",
                "names": list(leaf.names[:MAX_LISTED]),
                "not_before": leaf.not_before.isoformat(),
                "not_after": leaf.not_after.isoformat(),
                "days_left": math.floor(days),
                "lifespan_days": leaf.lifespan_days,
                "trusted_by": trusted_by,
                # Why each store refused, only when none accepted (the public stores always refuse a private CA).
                **({"validation_errors": {t.store: (t.error or "")[:200] for t in leaf.trust}} if not trusted_by else {}),
            }
        )
        label = leaf.subject if len(scan.leaves) > 1 else "certificate"
        if days < 0:
            ago = f"{math.floor(-days)} day(s)" if days <= -1 else f"{math.ceil(-days * 24)} hour(s)"
            failures.append(f"{label} expired {ago} ago ({leaf.not_after.date().isoformat()})")
        elif leaf.not_before > now:
            failures.append(f"{label} not valid before {leaf.not_before.isoformat()}")
        elif host and leaf.names and not names_match(host, leaf.names):
            failures.append(f"{label} names {', '.join(leaf.names[:5])}, not {host}")
        elif not trusted_by:
            failures.append(f"{label} chain not trusted by any store ({_first_error(leaf)})")
        elif days < min_days:
            failures.append(f"{label} expires in {math.floor(days)} day(s), fewer than {min_days}")
        elif days < warn_days:
            warns.append(f"{label} expires in {math.floor(days)} day(s), fewer than {warn_days}")
        if leaf.lifespan_days > max_lifespan_days:
            warns.append(f"{label} lifespan {leaf.lifespan_days} days, over {max_lifespan_days}")
    evidence["leaves"] = leaves_evidence
    soonest = min(scan.leaves, key=lambda leaf: leaf.not_after)
    stores = sorted({t.store for leaf in scan.leaves for t in leaf.trust if t.ok})
    observed = {"days_left": math.floor(soonest.days_left(now)), "trusted_by": stores, "names": list(soonest.names[:5])}
    if failures:
        return Finding("failed", "; ".join(failures), observed, expected, evidence)
    if warns:
        return Finding("warned", "; ".join(warns), observed, expected, evidence)
    return Finding(
        "passed",
        f"trusted ({', '.join(stores)}), valid for {host}, {observed['days_left']} days left",
        observed,
        expected,
        evidence,
    )


def _first_error(leaf: Leaf) -> str:
    """The most telling validation error: the supplied CA's when there is one."""
    errors = sorted((t.store != SUPPLIED_CA_STORE, t.store, t.error or "no reason given") for t in leaf.trust if not t.ok)
    if not errors:
        return "no trust store was consulted"
    _, store, error = errors[0]
    return f"{store}: {error[:160]}"


def names_match(host: str, names: Iterable[str]) -> bool:
    """RFC 6125 matching, for the message only (sslyze's path validation decides trust)."""
    host = host.lower().rstrip(".")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    for name in names:
        name = name.lower().rstrip(".")
        if address is not None:
            try:
                if ipaddress.ip_address(name) == address:
                    return True
            except ValueError:
                continue
        elif name == host or (name.startswith("*.") and "." in host and host.split(".", 1)[1] == name[2:]):
            return True
    return False


def _scan_failed(scan: ScanFailed, expected: Any) -> Finding:
    return Finding(
        "error",
        f"TLS scan of {scan.host}:{scan.port} did not complete: {scan.reason}",
        observed="ScanFailed",
        expected=expected,
        evidence={"server": f"{scan.host}:{scan.port}", "reason": scan.reason[:500], "scan_s": round(scan.duration_s, 3)},
    )


# --------------------------------------------------------------------------- the scan (I/O)


def resolve(host: str, port: int) -> str:
    """The one address to scan: the literal itself, 127.0.0.1 for localhost, else the first IPv4 answer.

    sslyze resolves by itself otherwise and may pick ::1 or 127.0.0.1 from one run to the next;
    an explicit address makes runs comparable while the SNI keeps the hostname.
    """
    try:
        return str(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        pass
    if host.lower() == "localhost":
        return "127.0.0.1"
    try:
        answers = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise ProbeError(f"cannot resolve {host}: {exc}") from None
    if not answers:
        raise ProbeError(f"{host} has no address")
    ipv4 = [a for a in answers if a[0] == socket.AF_INET]
    return str((ipv4 or answers)[0][4][0])


def scan(
    host: str,
    port: int,
    *,
    ca_file: Path | None,
    timeout_s: float,
    commands: Iterable[str],
    concurrency: int = 5,
    budget_s: float | None = None,
) -> ScanOutcome:
    """Scan ``host:port`` with the named sslyze commands; never raises for a server problem.

    Each connection waits at most ``timeout_s``; the whole scan at most ``budget_s`` (default
    20 x ``timeout_s``), after which the scan is abandoned (its threads finish on their own).
    """
    budget = budget_s if budget_s is not None else 20 * timeout_s
    started = time.perf_counter()
    box: dict[str, Any] = {}

    def work() -> None:
        try:
            ip = resolve(host, port)
            box["ip"] = ip
            result = _run_sslyze(host, ip, port, ca_file=ca_file, timeout_s=timeout_s, commands=commands, concurrency=concurrency)
            box["result"] = result
            if result.scan_status.name != "COMPLETED":
                # Inside the worker, so the diagnosis counts against the scan budget too.
                box["diagnosis"] = handshake_problem(host, ip, port, timeout_s=timeout_s)
        except BaseException as exc:  # handed to the caller's thread
            box["error"] = exc

    with warnings.catch_warnings():
        # sslyze's bundled trust stores hold a root with a negative serial number, which
        # cryptography >= 42 warns about on every load; not the target's certificate, not our business.
        warnings.filterwarnings("ignore", message=".*serial number which wasn't positive", category=Warning)
        worker = threading.Thread(target=work, name=f"releasegate-tls-scan-{host}:{port}", daemon=True)
        worker.start()
        worker.join(budget)
    elapsed = time.perf_counter() - started
    if worker.is_alive():
        return ScanFailed(host, port, f"no result within the {budget:g} s scan budget", elapsed)
    if "error" in box:
        exc = box["error"]
        reason = str(exc) if isinstance(exc, ProbeError) else f"{type(exc).__name__}: {exc}"
        return ScanFailed(host, port, reason, elapsed)
    result: ServerScanResult = box["result"]
    outcome = observe(result, host=host, ip=box["ip"], port=port, duration_s=elapsed)
    diagnosis = box.get("diagnosis")
    if isinstance(outcome, ScanFailed) and diagnosis is not None:
        # sslyze tries every protocol version and reports only that none worked ("could not find a
        # TLS version and cipher suite supported by the server"), which reads as a configuration
        # problem when the server in fact stalled or reset the handshake: lead with what happened.
        said = re.sub(r"^cannot connect over TLS: \S+ -> ", "", outcome.reason)
        return ScanFailed(host, port, f"cannot connect over TLS: {diagnosis} (sslyze: {said[:160]})", outcome.duration_s)
    return outcome


def handshake_problem(host: str, ip: str, port: int, *, timeout_s: float) -> str | None:
    """What one permissive TLS handshake with ``ip:port`` runs into, when it is not the server's TLS answer.

    A stall (no answer to the ClientHello), a reset or a close mid-handshake, or a peer that does
    not speak TLS, in words; None when the handshake completes or the server answers with a TLS
    alert (then sslyze's account stands: it knows protocol versions this client does not offer).
    Each socket operation waits at most ``timeout_s``.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # TLS 1.0 on purpose: a legacy server must still answer
            context.minimum_version = ssl.TLSVersion.TLSv1
        context.set_ciphers("ALL:@SECLEVEL=0")
    except (ValueError, ssl.SSLError):
        pass  # an OpenSSL without legacy support: the default floor still tells a stall from an answer
    try:
        with socket.create_connection((ip, port), timeout=timeout_s) as raw:
            with context.wrap_socket(raw, server_hostname=host.strip("[]")):
                return None
    except TimeoutError:
        return f"the server accepted the TCP connection but did not answer the TLS ClientHello within {timeout_s:g} s"
    except ConnectionRefusedError:
        return None  # sslyze says so already
    except ConnectionResetError:
        return "the server reset the connection during the TLS handshake"
    except ssl.SSLEOFError:
        return "the server closed the connection during the TLS handshake"
    except ssl.SSLError as exc:
        if exc.reason in ("WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "PACKET_LENGTH_TOO_LONG"):
            return f"the server does not answer in TLS ({exc.reason})"
        return None  # a TLS alert or a negotiation failure: the server speaks TLS
    except OSError as exc:
        return f"TLS handshake failed: {exc.strerror or exc}"


def _run_sslyze(
    host: str, ip: str, port: int, *, ca_file: Path | None, timeout_s: float, commands: Iterable[str], concurrency: int
) -> ServerScanResult:
    from sslyze.plugins.certificate_info.implementation import CertificateInfoExtraArgument
    from sslyze.plugins.scan_commands import ScanCommand
    from sslyze.scanner.models import ScanCommandsExtraArguments, ServerScanRequest
    from sslyze.scanner.scanner import Scanner
    from sslyze.server_setting import ServerNetworkConfiguration, ServerNetworkLocation

    extra = ScanCommandsExtraArguments(
        certificate_info=CertificateInfoExtraArgument(custom_ca_file=ca_file) if ca_file is not None else None
    )
    request = ServerScanRequest(
        server_location=ServerNetworkLocation(hostname=host, port=port, ip_address=ip),
        network_configuration=ServerNetworkConfiguration(
            tls_server_name_indication=host,
            network_timeout=max(1, math.ceil(timeout_s)),
            # Retries multiply the time a dead or tarpitting server costs; one retry absorbs a reset.
            network_max_retries=1,
        ),
        scan_commands={ScanCommand(c) for c in commands},
        scan_commands_extra_arguments=extra,
    )
    scanner = Scanner(per_server_concurrent_connections_limit=concurrency, concurrent_server_scans_limit=1)
    scanner.queue_scans([request])
    results = list(scanner.get_results())
    if len(results) != 1:
        raise ProbeError(f"sslyze returned {len(results)} results for one server")
    return results[0]


def observe(result: ServerScanResult, *, host: str, ip: str, port: int, duration_s: float) -> ScanOutcome:
    """sslyze's result as plain data (the boundary: nothing past here sees an sslyze object)."""
    from sslyze.scanner.models import ServerScanStatusEnum
    from sslyze.scanner.scan_command_attempt import ScanCommandAttemptStatusEnum

    if result.scan_status != ServerScanStatusEnum.COMPLETED or result.scan_result is None:
        trace = result.connectivity_error_trace
        reason = str(trace).strip().splitlines()[-1] if trace is not None and str(trace).strip() else result.connectivity_status.value
        return ScanFailed(host, port, f"cannot connect over TLS: {reason[:300]}", duration_s)
    attempts = result.scan_result
    errors: dict[str, str] = {}

    def completed(name: str) -> Any:
        attempt = getattr(attempts, name)
        if attempt.status == ScanCommandAttemptStatusEnum.COMPLETED and attempt.result is not None:
            return attempt.result
        if attempt.status == ScanCommandAttemptStatusEnum.ERROR:
            trace = attempt.error_trace
            last = str(trace).strip().splitlines()[-1] if trace is not None and str(trace).strip() else ""
            reason = attempt.error_reason.value if attempt.error_reason is not None else "error"
            errors[name] = f"{reason}: {last[:200]}".rstrip(": ")
        return None

    versions: dict[TlsVersion, tuple[AcceptedSuite, ...]] = {}
    for version, name in _VERSION_COMMANDS.items():
        suites = completed(name)
        if suites is not None:
            versions[version] = tuple(_suite(s) for s in suites.accepted_cipher_suites)
    curves_result = completed("elliptic_curves")
    curves = tuple(c.name for c in curves_result.supported_curves or ()) if curves_result is not None else None
    cert_result = completed("certificate_info")
    leaves = tuple(_leaf(d) for d in cert_result.certificate_deployments) if cert_result is not None else None
    raw = {name: completed(name) for name in _WEAKNESS_COMMANDS}
    renegotiation = raw["session_renegotiation"]
    weaknesses = Weaknesses(
        heartbleed=raw["heartbleed"].is_vulnerable_to_heartbleed if raw["heartbleed"] else None,
        ccs_injection=raw["openssl_ccs_injection"].is_vulnerable_to_ccs_injection if raw["openssl_ccs_injection"] else None,
        robot=raw["robot"].robot_result.name if raw["robot"] else None,
        secure_renegotiation=renegotiation.supports_secure_renegotiation if renegotiation else None,
        client_renegotiation_dos=renegotiation.is_vulnerable_to_client_renegotiation_dos if renegotiation else None,
        compression=raw["tls_compression"].supports_compression if raw["tls_compression"] else None,
        fallback_scsv=raw["tls_fallback_scsv"].supports_fallback_scsv if raw["tls_fallback_scsv"] else None,
        extended_master_secret=raw["tls_extended_master_secret"].supports_ems_extension if raw["tls_extended_master_secret"] else None,
    )
    return TlsScan(
        host=host,
        ip=ip,
        port=port,
        versions=versions,
        curves=curves,
        leaves=leaves,
        weaknesses=weaknesses,
        errors=errors,
        duration_s=duration_s,
    )


def _suite(accepted: Any) -> AcceptedSuite:
    from nassl.ephemeral_key_info import DhEphemeralKeyInfo, EcDhEphemeralKeyInfo

    key = accepted.ephemeral_key
    if isinstance(key, EcDhEphemeralKeyInfo):
        return AcceptedSuite(accepted.cipher_suite.name, "ecdh", key.curve_name, key.size)
    if isinstance(key, DhEphemeralKeyInfo):
        return AcceptedSuite(accepted.cipher_suite.name, "dh", None, key.size)
    return AcceptedSuite(accepted.cipher_suite.name)


def _leaf(deployment: Any) -> Leaf:
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    cert: x509.Certificate = deployment.received_certificate_chain[0]
    key = cert.public_key()
    if isinstance(key, ec.EllipticCurvePublicKey):
        key_type, bits, curve = "ecdsa", key.key_size, key.curve.name
    elif isinstance(key, rsa.RSAPublicKey):
        key_type, bits, curve = "rsa", key.key_size, None
    else:
        key_type, bits, curve = type(key).__name__, int(getattr(key, "key_size", 0) or 0), None
    names: list[str] = []
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = [*san.get_values_for_type(x509.DNSName), *(str(a) for a in san.get_values_for_type(x509.IPAddress))]
    except x509.ExtensionNotFound:
        pass
    oid = cert.signature_algorithm_oid
    return Leaf(
        subject=cert.subject.rfc4514_string()[:200],
        issuer=cert.issuer.rfc4514_string()[:200],
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        key_type=key_type,
        key_bits=bits,
        key_curve=curve,
        signature=str(getattr(oid, "_name", oid.dotted_string)),
        names=tuple(names[:100]),
        trust=tuple(
            TrustCheck(store=p.trust_store.name, ok=bool(p.was_validation_successful), error=p.validation_error)
            for p in deployment.path_validation_results
        ),
    )
