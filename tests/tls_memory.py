"""A complete TLS handshake between two OpenSSL endpoints over memory BIOs: no sockets, no ports.

Used by the tests of the reference deployment's TLS settings, where what matters is what two
contexts negotiate, not the network between them.
"""

from __future__ import annotations

import ssl


def handshake(server_context: ssl.SSLContext, client_context: ssl.SSLContext) -> tuple[str | None, str, bytes]:
    """(version, cipher, leaf DER) of a complete handshake; ssl.SSLError when the two cannot agree."""
    c_in, c_out, s_in, s_out = ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO()
    client_end = client_context.wrap_bio(c_in, c_out, server_hostname="localhost")
    server_end = server_context.wrap_bio(s_in, s_out, server_side=True)
    done = {"client": False, "server": False}
    for _ in range(10):
        for side, end, outgoing, incoming in (("client", client_end, c_out, s_in), ("server", server_end, s_out, c_in)):
            if not done[side]:
                try:
                    end.do_handshake()
                    done[side] = True
                except ssl.SSLWantReadError:
                    pass
                finally:
                    incoming.write(outgoing.read())
        if all(done.values()):
            cipher, der = client_end.cipher(), client_end.getpeercert(binary_form=True)
            assert cipher is not None and der is not None
            return client_end.version(), cipher[0], der
    raise AssertionError("handshake did not finish")
