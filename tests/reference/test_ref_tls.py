"""The reference service's TLS material and server context (releasegate.reference.tls).

Certificates are parsed and verified with ``cryptography``'s strict RFC 5280 verifier (the one
sslyze 6 uses); handshakes run between real OpenSSL endpoints over memory BIOs, so they need
neither sockets nor threads. test_ref_server.py repeats the decisive ones over loopback TCP.
"""

from __future__ import annotations

import ipaddress
import ssl
import stat
import warnings
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from releasegate.reference import tls
from releasegate.reference.settings import ServiceSettings
from tls_memory import handshake as memory_handshake

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
AEAD_TLS12 = {"ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-ECDSA-CHACHA20-POLY1305"}


def settings(tmp_path: Path, *faults: str) -> ServiceSettings:
    return ServiceSettings(data_dir=tmp_path, faults=frozenset(faults))


def certs(material: tls.TlsMaterial) -> tuple[x509.Certificate, x509.Certificate]:
    return x509.load_pem_x509_certificate(material.ca_pem), x509.load_pem_x509_certificate(material.cert_pem)


def verify(material: tls.TlsMaterial, name: x509.DNSName | x509.IPAddress, at: datetime = NOW) -> None:
    ca, leaf = certs(material)
    verifier = PolicyBuilder().store(Store([ca])).time(at).build_server_verifier(name)
    verifier.verify(leaf, [])


LOCALHOST = x509.DNSName("localhost")
IPV4 = x509.IPAddress(ipaddress.ip_address("127.0.0.1"))
IPV6 = x509.IPAddress(ipaddress.ip_address("::1"))


# --- certificates -----------------------------------------------------------------------------


def test_ca_has_the_extensions_a_strict_verifier_requires(tmp_path: Path) -> None:
    ca, _ = certs(tls.issue(settings(tmp_path), NOW))

    basic = ca.extensions.get_extension_for_class(x509.BasicConstraints)
    assert basic.critical and basic.value.ca
    usage = ca.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical and usage.value.key_cert_sign and usage.value.crl_sign and not usage.value.digital_signature
    assert ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    assert ca.subject == ca.issuer
    assert isinstance(ca.public_key(), ec.EllipticCurvePublicKey)


def test_healthy_leaf_names_localhost_and_both_loopback_addresses(tmp_path: Path) -> None:
    material = tls.issue(settings(tmp_path), NOW)
    ca, leaf = certs(material)

    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert set(san.get_values_for_type(x509.IPAddress)) == {ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")}
    assert leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value == x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH])
    usage = leaf.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical and usage.value.digital_signature and not usage.value.key_cert_sign
    assert not leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    aki = leaf.extensions.get_extension_for_oid(ExtensionOID.AUTHORITY_KEY_IDENTIFIER).value
    assert aki.key_identifier == ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    assert leaf.issuer == ca.subject
    lifespan = leaf.not_valid_after_utc - leaf.not_valid_before_utc
    assert lifespan == tls.LEAF_LIFETIME and lifespan <= timedelta(days=366)  # Mozilla intermediate (CA/B: 398)
    assert leaf.not_valid_before_utc <= NOW < leaf.not_valid_after_utc

    for name in (LOCALHOST, IPV4, IPV6):
        verify(material, name)  # raises if anything is off


def test_leaf_for_another_server_name_still_answers_to_localhost(tmp_path: Path) -> None:
    material = tls.issue(ServiceSettings(data_dir=tmp_path, server_name="app.internal.test"), NOW)
    verify(material, x509.DNSName("app.internal.test"))
    verify(material, LOCALHOST)


def test_wrong_host_leaf_names_only_another_host(tmp_path: Path) -> None:
    material = tls.issue(settings(tmp_path, "cert-wrong-host"), NOW)
    _, leaf = certs(material)

    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert list(san) == [x509.DNSName(tls.WRONG_HOST)]
    verify(material, x509.DNSName(tls.WRONG_HOST))  # a valid certificate, only for the wrong name
    for name in (LOCALHOST, IPV4, IPV6):
        with pytest.raises(VerificationError):
            verify(material, name)


def test_expired_leaf_ended_yesterday_and_fails_verification(tmp_path: Path) -> None:
    material = tls.issue(settings(tmp_path, "cert-expired"), NOW)
    _, leaf = certs(material)

    assert leaf.not_valid_after_utc == NOW - timedelta(days=1)
    assert leaf.not_valid_after_utc - leaf.not_valid_before_utc == tls.LEAF_LIFETIME
    with pytest.raises(VerificationError, match="not valid at validation time"):
        verify(material, LOCALHOST)


def test_expiring_leaf_has_five_days_left_and_still_verifies(tmp_path: Path) -> None:
    material = tls.issue(settings(tmp_path, "cert-expiring"), NOW)
    _, leaf = certs(material)

    assert (leaf.not_valid_after_utc - NOW).days == 5
    verify(material, LOCALHOST)
    with pytest.raises(VerificationError):
        verify(material, LOCALHOST, at=NOW + timedelta(days=6))


def test_each_issue_makes_a_new_ca(tmp_path: Path) -> None:
    first, second = tls.issue(settings(tmp_path), NOW), tls.issue(settings(tmp_path), NOW)
    assert certs(first)[0].subject != certs(second)[0].subject


def test_write_material_writes_leaf_only_chain_and_a_private_key(tmp_path: Path) -> None:
    stale = tmp_path / "tls" / "server.key"
    stale.parent.mkdir()
    stale.write_text("old")
    stale.chmod(0o644)

    paths = tls.write_material(settings(tmp_path))

    assert paths.ca == tmp_path / "tls" / "ca.pem"
    assert stat.S_IMODE(paths.key.stat().st_mode) == 0o600
    assert len(x509.load_pem_x509_certificates(paths.cert.read_bytes())) == 1
    assert len(x509.load_pem_x509_certificates(paths.ca.read_bytes())) == 1
    assert b"PRIVATE KEY" not in paths.ca.read_bytes() + paths.cert.read_bytes()


# --- the server context -------------------------------------------------------------------------


def handshake(server: ssl.SSLContext, client: ssl.SSLContext) -> tuple[str | None, str]:
    """(version, cipher) of a complete handshake over memory BIOs."""
    version, cipher, _ = memory_handshake(server, client)
    return version, cipher


def client_context(ca: Path, version: ssl.TLSVersion | None = None, ciphers: str | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca))
    if version is not None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # TLS 1.0/1.1 are deprecated: that is what is tested
            context.minimum_version = context.maximum_version = version
    if ciphers is not None:
        context.set_ciphers(ciphers)
    return context


LEGACY_CLIENT = "DEFAULT:@SECLEVEL=0"  # Debian's OpenSSL 3 needs level 0 for TLS 1.0/1.1 on the client too


@pytest.fixture(scope="module")
def healthy(tmp_path_factory: pytest.TempPathFactory) -> tuple[ssl.SSLContext, Path]:
    s = settings(tmp_path_factory.mktemp("healthy"))
    paths = tls.write_material(s)
    return tls.server_ssl_context(s, paths), paths.ca


@pytest.fixture(scope="module")
def legacy(tmp_path_factory: pytest.TempPathFactory) -> tuple[ssl.SSLContext, Path]:
    s = settings(tmp_path_factory.mktemp("legacy"), "tls-legacy")
    paths = tls.write_material(s)
    return tls.server_ssl_context(s, paths), paths.ca


def test_server_context_options_follow_mozilla_intermediate(healthy: tuple[ssl.SSLContext, Path]) -> None:
    context, _ = healthy
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert context.maximum_version == ssl.TLSVersion.TLSv1_3
    assert ssl.OP_NO_COMPRESSION in context.options
    assert ssl.OP_NO_RENEGOTIATION in context.options
    assert ssl.OP_CIPHER_SERVER_PREFERENCE not in context.options  # Mozilla intermediate: the client chooses
    assert context.releasegate_groups == tls.MOZILLA_GROUPS  # type: ignore[attr-defined]
    tls12 = {c["name"] for c in context.get_ciphers() if c["protocol"] == "TLSv1.2"}
    assert tls12 == AEAD_TLS12


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
def test_tls12_and_tls13_negotiate(healthy: tuple[ssl.SSLContext, Path], version: ssl.TLSVersion) -> None:
    context, ca = healthy
    negotiated, cipher = handshake(context, client_context(ca, version))
    assert negotiated == {ssl.TLSVersion.TLSv1_2: "TLSv1.2", ssl.TLSVersion.TLSv1_3: "TLSv1.3"}[version]
    if version == ssl.TLSVersion.TLSv1_2:
        assert cipher in AEAD_TLS12


@pytest.mark.parametrize("suite", sorted(AEAD_TLS12))
def test_each_mozilla_tls12_suite_is_accepted(healthy: tuple[ssl.SSLContext, Path], suite: str) -> None:
    context, ca = healthy
    assert handshake(context, client_context(ca, ssl.TLSVersion.TLSv1_2, suite)) == ("TLSv1.2", suite)


def test_tls12_cbc_suites_are_refused(healthy: tuple[ssl.SSLContext, Path]) -> None:
    context, ca = healthy
    client = client_context(ca, ssl.TLSVersion.TLSv1_2, "ECDHE-ECDSA-AES128-SHA256:ECDHE-ECDSA-AES256-SHA384:ECDHE-ECDSA-AES128-SHA")
    with pytest.raises(ssl.SSLError):
        handshake(context, client)


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1])
def test_old_tls_is_refused_when_healthy_and_accepted_under_tls_legacy(
    healthy: tuple[ssl.SSLContext, Path], legacy: tuple[ssl.SSLContext, Path], version: ssl.TLSVersion
) -> None:
    context, ca = healthy
    with pytest.raises(ssl.SSLError):
        handshake(context, client_context(ca, version, LEGACY_CLIENT))

    context, ca = legacy
    negotiated, _ = handshake(context, client_context(ca, version, LEGACY_CLIENT))
    assert negotiated == {ssl.TLSVersion.TLSv1: "TLSv1", ssl.TLSVersion.TLSv1_1: "TLSv1.1"}[version]


def test_tls_legacy_still_offers_the_modern_protocols(legacy: tuple[ssl.SSLContext, Path]) -> None:
    context, ca = legacy
    assert handshake(context, client_context(ca, ssl.TLSVersion.TLSv1_3))[0] == "TLSv1.3"
    assert handshake(context, client_context(ca, ssl.TLSVersion.TLSv1_2))[0] == "TLSv1.2"


@pytest.mark.parametrize(
    ("group", "accepted"), [("X25519", True), ("prime256v1", True), ("secp384r1", True), ("X448", False), ("secp521r1", False)]
)
def test_key_exchange_groups_are_x25519_p256_p384_only(healthy: tuple[ssl.SSLContext, Path], group: str, accepted: bool) -> None:
    # Given a client that offers exactly one group (set_ecdh_curve sets the whole list)
    context, ca = healthy
    client = client_context(ca, ssl.TLSVersion.TLSv1_3)
    client.set_ecdh_curve(group)
    # Then the handshake succeeds only for the groups Mozilla "intermediate" lists
    if accepted:
        assert handshake(context, client)[0] == "TLSv1.3"
    else:
        with pytest.raises(ssl.SSLError):
            handshake(context, client)
        # Control: OpenSSL's default server list does accept it, so the refusal is our doing.
        default = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        default.load_cert_chain(ca.parent / "server.pem", ca.parent / "server.key")
        assert handshake(default, client)[0] == "TLSv1.3"
