"""TLS material and server settings of the reference service.

The service must look like a well-run production deployment to the TLS checks, so that a
healthy start passes them and each TLS fault fails exactly one:

* a local CA (EC P-256) whose certificate a strict RFC 5280 verifier accepts (sslyze 6 and
  ``cryptography``'s verifier reject CA certificates with wrong extension criticality);
* a leaf for ``settings.server_name`` with SAN ``DNS:localhost, IP:127.0.0.1, IP:::1``, EKU
  serverAuth, SKI/AKI and a 90-day lifespan (Mozilla "intermediate" allows at most 366 days);
* a server :class:`ssl.SSLContext` per Mozilla "intermediate": TLS 1.2 and 1.3 only, ECDHE
  with AEAD suites only, groups X25519/P-256/P-384, no compression, no renegotiation.

Faults (``releasegate.reference.faults``): ``cert-expired``, ``cert-expiring``,
``cert-wrong-host`` change the leaf; ``tls-legacy`` and ``tls-weak-ciphers`` change the
context: ``tls-legacy`` adds TLS 1.0/1.1 (with the CBC suites they need, which OpenSSL then also
offers on TLS 1.2, as any nginx configured that way would), ``tls-weak-ciphers`` adds CBC and
static-RSA suites to TLS 1.2 (and an RSA leaf, since static RSA key transport needs an RSA key)
while the versions stay 1.2/1.3.

:func:`issue` is pure (it takes the clock as an argument and returns PEM bytes);
:func:`write_material` puts the result on disk; :func:`server_ssl_context` builds the context.
The CA's private key is never written: nothing needs it after the leaf is signed.
"""

from __future__ import annotations

import ctypes
import ipaddress
import os
import ssl
import sys
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from releasegate.reference.settings import ServiceSettings

__all__ = [
    "LEAF_LIFETIME",
    "MOZILLA_GROUPS",
    "MOZILLA_TLS12_CIPHERS",
    "WRONG_HOST",
    "TlsMaterial",
    "TlsPaths",
    "WEAK_CIPHERS",
    "issue",
    "server_ssl_context",
    "write_material",
]

LEAF_LIFETIME = timedelta(days=90)
CA_LIFETIME = timedelta(days=3650)
WRONG_HOST = "wrong-host.example.test"  # fault cert-wrong-host: a name no client asks for
EXPIRING_LEFT = timedelta(days=5, hours=1)  # fault cert-expiring; the extra hour keeps whole-day arithmetic at 5
# Backdating covers clock skew between the service and its clients (and the TLS checks).
BACKDATE = timedelta(hours=1)

# Mozilla "intermediate" TLS 1.2 suites for an ECDSA certificate (the RSA twins would never be
# chosen with an EC key; DHE suites need DH parameters and add nothing here). TLS 1.3 suites
# cannot be set from Python's ssl module, but OpenSSL 3's defaults are exactly Mozilla's three
# (TLS_AES_128_GCM_SHA256, TLS_AES_256_GCM_SHA384, TLS_CHACHA20_POLY1305_SHA256).
MOZILLA_TLS12_CIPHERS = "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305"
MOZILLA_GROUPS = "X25519:P-256:P-384"
# Fault tls-legacy: the modern suites plus the CBC-SHA1 ones TLS 1.0/1.1 need. Debian's OpenSSL 3
# refuses TLS 1.0/1.1 above security level 0 (their MD5-SHA1 handshake signature is barred), so
# without @SECLEVEL=0 the fault would not really turn the old protocols on.
LEGACY_CIPHERS = MOZILLA_TLS12_CIPHERS + ":ECDHE-ECDSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA:@SECLEVEL=0"
# Fault tls-weak-ciphers: the Mozilla suites plus CBC (ECDHE-ECDSA with SHA-2 and SHA-1 MACs) and
# static RSA key exchange (no forward secrecy; the ROBOT family of attacks), all on TLS 1.2.
WEAK_CIPHERS = MOZILLA_TLS12_CIPHERS + ":ECDHE-ECDSA-AES128-SHA256:ECDHE-ECDSA-AES128-SHA:AES128-GCM-SHA256:AES128-SHA256:AES128-SHA"
RSA_KEY_BITS = 2048  # the RSA leaf of tls-weak-ciphers: the key is not the weakness, the suites are

_SSL_CTRL_SET_GROUPS_LIST = 92  # OpenSSL's SSL_CTX_set1_groups_list() is this SSL_CTX_ctrl() call


@dataclass(frozen=True)
class TlsMaterial:
    """PEM encodings of one service's CA certificate, leaf certificate and leaf key."""

    ca_pem: bytes
    cert_pem: bytes  # the leaf only: the CA is the trust anchor, which a server does not send
    key_pem: bytes
    # A second leaf with an RSA key (fault tls-weak-ciphers only), same names and dates.
    rsa_cert_pem: bytes | None = None
    rsa_key_pem: bytes | None = None


@dataclass(frozen=True)
class TlsPaths:
    """Where :func:`write_material` put the material; ``ca`` is what clients trust."""

    ca: Path
    cert: Path
    key: Path
    rsa_cert: Path | None = None
    rsa_key: Path | None = None


def _leaf_window(settings: ServiceSettings, now: datetime) -> tuple[datetime, datetime]:
    if settings.has("cert-expired"):
        not_after = now - timedelta(days=1)
        return not_after - LEAF_LIFETIME, not_after
    if settings.has("cert-expiring"):
        not_after = now + EXPIRING_LEFT
        return not_after - LEAF_LIFETIME, not_after
    return now - BACKDATE, now - BACKDATE + LEAF_LIFETIME


def _leaf_names(settings: ServiceSettings) -> tuple[str, list[x509.GeneralName]]:
    if settings.has("cert-wrong-host"):
        # No IP entries either: a client reaching the service by 127.0.0.1 must fail too.
        return WRONG_HOST, [x509.DNSName(WRONG_HOST)]
    names: list[x509.GeneralName] = [x509.DNSName(settings.server_name)]
    if settings.server_name != "localhost":
        names.append(x509.DNSName("localhost"))
    names += [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.IPAddress(ipaddress.ip_address("::1"))]
    return settings.server_name, names


def issue(settings: ServiceSettings, now: datetime) -> TlsMaterial:
    """A fresh CA and a leaf signed by it, shaped by the certificate faults in ``settings``.

    Pure apart from key generation: the clock comes in as ``now`` so tests can pin dates.
    """
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "releasegate reference deployment"),
            # A per-run suffix: two services started side by side (baseline and canary) must
            # not present different CAs under one name.
            x509.NameAttribute(NameOID.COMMON_NAME, f"releasegate local CA {os.urandom(4).hex()}"),
        ]
    )
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        # Backdated past any leaf window (cert-expired starts 91 days ago) so that the chain
        # is consistent and only the leaf's dates decide.
        .not_valid_before(now - LEAF_LIFETIME - timedelta(days=30))
        .not_valid_after(now + CA_LIFETIME)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    common_name, san = _leaf_names(settings)
    not_before, not_after = _leaf_window(settings, now)

    def leaf(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> x509.Certificate:
        is_rsa = isinstance(key, rsa.RSAPrivateKey)
        return (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                # EC key: digitalSignature only. An RSA key also serves static RSA key transport,
                # which needs keyEncipherment.
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=is_rsa,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.SubjectAlternativeName(san), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
            .sign(ca_key, hashes.SHA256())
        )

    def key_pem(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
        return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())

    leaf_key = ec.generate_private_key(ec.SECP256R1())
    rsa_cert_pem = rsa_key_pem = None
    if settings.has("tls-weak-ciphers"):
        rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=RSA_KEY_BITS)
        rsa_cert_pem, rsa_key_pem = leaf(rsa_key).public_bytes(serialization.Encoding.PEM), key_pem(rsa_key)
    return TlsMaterial(
        ca_pem=ca_cert.public_bytes(serialization.Encoding.PEM),
        cert_pem=leaf(leaf_key).public_bytes(serialization.Encoding.PEM),
        key_pem=key_pem(leaf_key),
        rsa_cert_pem=rsa_cert_pem,
        rsa_key_pem=rsa_key_pem,
    )


def _write_private(path: Path, data: bytes) -> None:
    # Created 0600 from the start (no window in which another user could read the key), and
    # fchmod'ed in case the file already existed with a wider mode.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, data)
    finally:
        os.close(fd)


def write_material(settings: ServiceSettings, *, now: datetime | None = None) -> TlsPaths:
    """Issue fresh material and write ``ca.pem``, ``server.pem`` and ``server.key`` (0600) under ``data_dir/tls``.

    Fresh on every start: the certificate faults differ from one start to the next, and a CA
    reused across runs would outlive the leaves it vouches for for no benefit.
    """
    material = issue(settings, now or datetime.now(UTC))
    folder = settings.data_dir / "tls"
    folder.mkdir(parents=True, exist_ok=True)
    paths = TlsPaths(ca=folder / "ca.pem", cert=folder / "server.pem", key=folder / "server.key")
    _write_private(paths.key, material.key_pem)
    paths.cert.write_bytes(material.cert_pem)
    paths.ca.write_bytes(material.ca_pem)
    if material.rsa_cert_pem is not None and material.rsa_key_pem is not None:
        paths = TlsPaths(ca=paths.ca, cert=paths.cert, key=paths.key, rsa_cert=folder / "server-rsa.pem", rsa_key=folder / "server-rsa.key")
        assert paths.rsa_cert is not None and paths.rsa_key is not None
        _write_private(paths.rsa_key, material.rsa_key_pem)
        paths.rsa_cert.write_bytes(material.rsa_cert_pem)
    return paths


def _ssl_ctx_pointer(context: ssl.SSLContext, libssl: ctypes.CDLL) -> int | None:
    """The ``SSL_CTX *`` inside a CPython :class:`ssl.SSLContext`, or None when it cannot be found safely.

    CPython's ``PySSLContext`` starts with ``PyObject_HEAD`` and then the ``SSL_CTX *``. The
    pointer is only trusted if OpenSSL reports the very options Python reports, before and after
    Python flips one: a wrong pointer cannot agree twice.
    """
    if sys.implementation.name != "cpython" or hasattr(sys, "gettotalrefcount"):  # debug builds have a longer header
        return None
    pointer = ctypes.c_void_p.from_address(id(context) + 2 * ctypes.sizeof(ctypes.c_void_p)).value
    if not pointer:
        return None
    get_options = libssl.SSL_CTX_get_options
    get_options.restype = ctypes.c_uint64
    get_options.argtypes = [ctypes.c_void_p]
    if get_options(pointer) != context.options:
        return None
    context.options ^= ssl.OP_NO_TICKET
    agrees = get_options(pointer) == context.options
    context.options ^= ssl.OP_NO_TICKET
    return pointer if agrees else None


def _restrict_groups(context: ssl.SSLContext, groups: str) -> str:
    """Limit the key-exchange groups to ``groups``; return the groups actually in force.

    Python 3.11's ssl module has no ``set_groups``, and ``set_ecdh_curve`` takes a single curve.
    OpenSSL 3's default list also offers X448 and P-521, which Mozilla "intermediate" (and
    sslyze's checker) count as non-compliant. So: ``set_groups`` where Python has it, else
    OpenSSL's ``SSL_CTX_set1_groups_list`` through ctypes on the context's own ``SSL_CTX``
    (symbols resolved through the ``_ssl`` extension, so it is the same libssl), else P-256 alone
    (compliant, but clients that prefer X25519 need one more round trip).
    """
    set_groups = getattr(context, "set_groups", None)
    if set_groups is not None:  # newer Pythons
        set_groups(groups)
        return groups
    try:
        import _ssl

        libssl = ctypes.CDLL(_ssl.__file__)
        pointer = _ssl_ctx_pointer(context, libssl)
        if pointer is not None:
            ctrl = libssl.SSL_CTX_ctrl
            ctrl.restype = ctypes.c_long
            ctrl.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_long, ctypes.c_char_p]
            if ctrl(pointer, _SSL_CTRL_SET_GROUPS_LIST, 0, groups.encode()) == 1:
                return groups
    except (OSError, AttributeError):  # no loadable _ssl file or no such symbol (statically linked OpenSSL)
        pass
    context.set_ecdh_curve("prime256v1")
    return "P-256"


def _base_context(settings: ServiceSettings, paths: TlsPaths) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
    context.options &= ~ssl.OP_CIPHER_SERVER_PREFERENCE
    context.maximum_version = ssl.TLSVersion.TLSv1_3
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(WEAK_CIPHERS if settings.has("tls-weak-ciphers") else MOZILLA_TLS12_CIPHERS)
    context.load_cert_chain(certfile=paths.cert, keyfile=paths.key)
    if paths.rsa_cert is not None and paths.rsa_key is not None:
        context.load_cert_chain(certfile=paths.rsa_cert, keyfile=paths.rsa_key)  # a second key type: OpenSSL keeps both
    context.set_alpn_protocols(["http/1.1"])  # uvicorn's h11 speaks HTTP/1.1 only
    return context


def server_ssl_context(settings: ServiceSettings, paths: TlsPaths) -> ssl.SSLContext:
    """The server context: Mozilla "intermediate", or broken by fault ``tls-legacy`` / ``tls-weak-ciphers``.

    Cipher order is left to the client, as Mozilla "intermediate" recommends (every suite on
    offer is strong), so ``OP_CIPHER_SERVER_PREFERENCE``, which Python sets by default, is cleared.
    Compression and renegotiation are off. The groups actually in force are kept as
    ``context.releasegate_groups`` for tests and diagnostics.
    """
    context = _base_context(settings, paths)
    if settings.has("tls-legacy"):
        with warnings.catch_warnings():
            # Python warns that TLS 1.0 is deprecated; turning it on is the point of this fault.
            warnings.simplefilter("ignore", DeprecationWarning)
            context.minimum_version = ssl.TLSVersion.TLSv1
        context.set_ciphers(LEGACY_CIPHERS)
    context.releasegate_groups = _restrict_groups(context, MOZILLA_GROUPS)  # type: ignore[attr-defined]
    return context
