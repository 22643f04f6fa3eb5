"""The reference deployment's TLS faults break one thing each (handshakes over memory BIOs, no sockets).

tls-legacy adds TLS 1.0/1.1 (with CBC suites); tls-weak-ciphers adds CBC and static-RSA suites to
TLS 1.2 while the versions stay 1.2/1.3.
"""

from __future__ import annotations

import ssl
import warnings
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa

from releasegate.reference import tls
from releasegate.reference.settings import ServiceSettings
from tls_memory import handshake

LEGACY_CLIENT = "DEFAULT:@SECLEVEL=0"  # Debian's OpenSSL 3 needs level 0 for TLS 1.0/1.1 on the client too
V10, V11, V12, V13 = ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1, ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3


def server(tmp_path: Path, *faults: str) -> tuple[ssl.SSLContext, tls.TlsPaths]:
    settings = ServiceSettings(data_dir=tmp_path, faults=frozenset(faults))
    paths = tls.write_material(settings)
    return tls.server_ssl_context(settings, paths), paths


def client(ca: Path, version: ssl.TLSVersion, ciphers: str | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TLS 1.0/1.1 are deprecated: that is what is tested
        context.minimum_version = context.maximum_version = version
    if ciphers is not None:
        context.set_ciphers(ciphers)
    return context


@pytest.mark.parametrize("version", [V10, V11])
def test_tls_legacy_accepts_old_versions_with_cbc(tmp_path: Path, version: ssl.TLSVersion) -> None:
    context, paths = server(tmp_path, "tls-legacy")
    negotiated, cipher, _ = handshake(context, client(paths.ca, version, LEGACY_CLIENT))
    assert negotiated in ("TLSv1", "TLSv1.1")
    assert cipher.startswith("ECDHE-ECDSA-AES") and cipher.endswith("-SHA")


def test_tls_legacy_still_negotiates_tls12_and_tls13(tmp_path: Path) -> None:
    context, paths = server(tmp_path, "tls-legacy")
    assert handshake(context, client(paths.ca, V12))[0] == "TLSv1.2"
    assert handshake(context, client(paths.ca, V13))[0] == "TLSv1.3"


@pytest.mark.parametrize(
    "suite", ["ECDHE-ECDSA-AES128-SHA256", "ECDHE-ECDSA-AES128-SHA", "AES128-GCM-SHA256", "AES128-SHA256", "AES128-SHA"]
)
def test_tls_weak_ciphers_accepts_cbc_and_static_rsa_on_tls12(tmp_path: Path, suite: str) -> None:
    context, paths = server(tmp_path, "tls-weak-ciphers")
    negotiated, cipher, der = handshake(context, client(paths.ca, V12, suite))
    assert (negotiated, cipher) == ("TLSv1.2", suite)
    if suite.startswith("AES"):
        # static RSA key transport is served from the RSA leaf, which is as valid as the EC one
        leaf = x509.load_der_x509_certificate(der)
        assert isinstance(leaf.public_key(), rsa.RSAPublicKey)
        assert leaf.extensions.get_extension_for_class(x509.KeyUsage).value.key_encipherment


@pytest.mark.parametrize("version", [V10, V11])
def test_tls_weak_ciphers_keeps_the_versions(tmp_path: Path, version: ssl.TLSVersion) -> None:
    context, paths = server(tmp_path, "tls-weak-ciphers")
    with pytest.raises(ssl.SSLError):
        handshake(context, client(paths.ca, version, LEGACY_CLIENT))
    assert context.minimum_version == V12


def test_the_rsa_leaf_exists_only_under_tls_weak_ciphers(tmp_path: Path) -> None:
    _, healthy = server(tmp_path / "healthy")
    _, weak = server(tmp_path / "weak", "tls-weak-ciphers")
    assert healthy.rsa_cert is None and healthy.rsa_key is None
    assert weak.rsa_key is not None and weak.rsa_key.stat().st_mode & 0o777 == 0o600
