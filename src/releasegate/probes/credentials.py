"""What the security probes send as credentials and origins — one place for every family.

Pure: no I/O. The tokens passed in are secrets; nothing here logs or returns them in a form
meant for evidence.
"""

from __future__ import annotations

# Sent where an attacker's page would be the origin.
FOREIGN_ORIGIN = "https://evil.example.test"
# Not a JWT at all: any parser refuses it, so it only proves the endpoint asks for *something*.
GARBAGE_TOKEN = "releasegate-probe-invalid-token"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def tampered_jwt(token: str) -> str:
    """The gate's own JWT with its signature replaced: header and claims valid, signature not.

    Only a server that verifies signatures refuses it; that is the point (a garbage string is
    refused by any JWT parser). The whole signature is replaced, not one character: base64url's
    last character carries unused bits, so flipping it can leave the signature valid. A non-JWT
    token becomes a fixed string.
    """
    parts = token.split(".")
    if len(parts) == 3 and all(parts):
        filler = "A" if set(parts[2]) != {"A"} else "B"
        return f"{parts[0]}.{parts[1]}.{filler * len(parts[2])}"
    return "releasegate-invalid-token-0000000000000000"
