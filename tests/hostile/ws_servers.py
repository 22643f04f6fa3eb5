"""Hostile WebSocket servers on loopback, written on raw sockets so they can break the protocol on purpose.

    with hostile_ws(Behaviour.FLOOD) as server:
        server.url                   # ws://127.0.0.1:<port>/ws
        server.stats()               # connections upgraded, frames and bytes sent, close frames ignored

Every server completes the opening handshake (any request with a Sec-WebSocket-Key gets its 101),
then misbehaves as its :class:`Behaviour` says:

- ``SILENT``: never sends a frame, never answers the close handshake; reads and drops what comes.
- ``NO_CLOSE``: answers every data frame with a notice (none of the client's markers in it), and
  ignores close frames: the connection only ends when the client drops it.
- ``FLOOD``: sends small text frames as fast as the socket takes them, and ignores everything.
- ``HUGE_FRAME``: sends one text frame header announcing :data:`HUGE_FRAME_BYTES` (100 MB), then
  streams its payload at :data:`HUGE_BYTES_PER_S` until the client drops the connection; a client
  that reads it all has read 100 MB.

A websockets-based server cannot do these (it answers close frames and refuses oversized frames
itself), hence the hand-written framing. Bounded everywhere: loopback only, port 0, daemon threads,
every loop capped in count and in time (:data:`MAX_CONNECTION_S`, :data:`FLOOD_MAX_FRAMES`), every
socket with a timeout, everything closed in a ``finally``.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import socket
import struct
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
# No connection lives longer than this, whatever the client does.
MAX_CONNECTION_S = 30.0
MAX_REQUEST_BYTES = 16 * 1024
# A data frame from the client larger than this ends the connection (the probes send far less).
MAX_CLIENT_FRAME_BYTES = 1 << 20
SOCKET_TIMEOUT_S = 0.5
# The flood: frames sent in batches of FLOOD_BATCH, at most FLOOD_MAX_FRAMES per connection.
FLOOD_BATCH = 256
FLOOD_MAX_FRAMES = 2_000_000
HUGE_FRAME_BYTES = 100 * 1024 * 1024
HUGE_CHUNK = 64 * 1024
# The payload is streamed at this pace (100 MB in ~12 s): as a far server would, so that a client
# that keeps reading after refusing the frame is seen doing it (on loopback at full speed, 100 MB
# is gone in a fraction of a second whatever the client does).
HUGE_BYTES_PER_S = 8 * 1024 * 1024
NOTICE = b'{"type":"error","detail":"unknown message type"}'
OP_TEXT, OP_CLOSE = 0x1, 0x8


class Behaviour(enum.Enum):
    SILENT = "silent"
    NO_CLOSE = "no-close"
    FLOOD = "flood"
    HUGE_FRAME = "huge-frame"


@dataclass
class Stats:
    upgraded: int = 0
    frames_sent: int = 0
    bytes_sent: int = 0  # payload and headers, all connections
    close_frames_ignored: int = 0


def frame(opcode: int, payload: bytes) -> bytes:
    """An unmasked server frame (FIN set)."""
    size = len(payload)
    if size < 126:
        header = struct.pack("!BB", 0x80 | opcode, size)
    elif size < 1 << 16:
        header = struct.pack("!BBH", 0x80 | opcode, 126, size)
    else:
        header = struct.pack("!BBQ", 0x80 | opcode, 127, size)
    return header + payload


def _accept_key(key: str) -> str:
    return base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()  # noqa: S324 - RFC 6455 says SHA-1


class HostileWs:
    """The running server: its URL, and what it did (read under the lock)."""

    def __init__(self, behaviour: Behaviour) -> None:
        self.behaviour = behaviour
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.port = self._listener.getsockname()[1]
        self.url = f"ws://127.0.0.1:{self.port}/ws"
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._stats = Stats()
        self._sockets: list[socket.socket] = []
        self._threads: list[threading.Thread] = []

    def stats(self) -> Stats:
        with self._lock:
            return Stats(**vars(self._stats))

    def _count(self, *, frames: int = 0, sent: int = 0, ignored: int = 0, upgraded: int = 0) -> None:
        with self._lock:
            self._stats.frames_sent += frames
            self._stats.bytes_sent += sent
            self._stats.close_frames_ignored += ignored
            self._stats.upgraded += upgraded

    def start(self) -> HostileWs:
        thread = threading.Thread(target=self._accept, daemon=True)
        thread.start()
        self._threads.append(thread)
        return self

    def stop(self) -> None:
        self._stop.set()
        self._listener.close()
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            sock.close()
        for thread in self._threads:
            thread.join(2)

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:  # the 0.2 s timeout, or the listener closed by stop()
                continue
            conn.settimeout(SOCKET_TIMEOUT_S)
            with self._lock:
                self._sockets.append(conn)
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            thread.start()
            self._threads.append(thread)

    def _live(self, started: float) -> bool:
        return not self._stop.is_set() and time.monotonic() - started < MAX_CONNECTION_S

    def _serve(self, conn: socket.socket) -> None:
        started = time.monotonic()
        try:
            if not self._upgrade(conn, started):
                return
            {
                Behaviour.SILENT: self._silent,
                Behaviour.NO_CLOSE: self._no_close,
                Behaviour.FLOOD: self._flood,
                Behaviour.HUGE_FRAME: self._huge_frame,
            }[self.behaviour](conn, started)
        except OSError:
            pass  # the client went away: what every behaviour ends with
        finally:
            conn.close()

    def _upgrade(self, conn: socket.socket, started: float) -> bool:
        request = b""
        while b"\r\n\r\n" not in request and len(request) < MAX_REQUEST_BYTES and self._live(started):
            try:
                chunk = conn.recv(4096)
            except TimeoutError:
                continue
            if not chunk:
                return False
            request += chunk
        headers = {}
        for line in request.decode("latin-1").split("\r\n")[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        key = headers.get("sec-websocket-key")
        if key is None:
            conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            return False
        conn.sendall(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            + f"Sec-WebSocket-Accept: {_accept_key(key)}\r\n\r\n".encode()
        )
        self._count(upgraded=1)
        return True

    def _silent(self, conn: socket.socket, started: float) -> None:
        """Read and drop everything (close frames included) until the client hangs up."""
        while self._live(started):
            try:
                if not conn.recv(65536):
                    return
            except TimeoutError:
                continue

    def _no_close(self, conn: socket.socket, started: float) -> None:
        """A notice for every data frame; a close frame is counted and ignored."""
        buffer = b""
        while self._live(started):
            try:
                chunk = conn.recv(65536)
            except TimeoutError:
                continue
            if not chunk:
                return
            buffer += chunk
            while (parsed := _client_frame(buffer)) is not None:
                opcode, consumed = parsed
                buffer = buffer[consumed:]
                if opcode == OP_CLOSE:
                    self._count(ignored=1)
                elif opcode in (0x0, 0x1, 0x2):
                    reply = frame(OP_TEXT, NOTICE)
                    conn.sendall(reply)
                    self._count(frames=1, sent=len(reply))

    def _flood(self, conn: socket.socket, started: float) -> None:
        """Frames as fast as the socket takes them, up to FLOOD_MAX_FRAMES or MAX_CONNECTION_S."""
        batch = b"".join(frame(OP_TEXT, b'{"type":"noise","n":%d}' % n) for n in range(FLOOD_BATCH))
        sent = 0
        while sent < FLOOD_MAX_FRAMES and self._live(started):
            try:
                conn.sendall(batch)
            except TimeoutError:
                # The client stopped reading, and part of a frame may have gone out: no more frames
                # (they would be garbage), but the connection stays up and the close is still ignored.
                self._silent(conn, started)
                return
            sent += FLOOD_BATCH
            self._count(frames=FLOOD_BATCH, sent=len(batch))

    def _huge_frame(self, conn: socket.socket, started: float) -> None:
        """One text frame announcing HUGE_FRAME_BYTES, its payload streamed until sent or refused."""
        header = struct.pack("!BBQ", 0x80 | OP_TEXT, 127, HUGE_FRAME_BYTES)
        conn.sendall(header)
        self._count(frames=1, sent=len(header))
        chunk = b"x" * HUGE_CHUNK
        left = HUGE_FRAME_BYTES
        streaming = time.monotonic()
        while left > 0 and self._live(started):
            # Paced: never ahead of HUGE_BYTES_PER_S since the header went out.
            time.sleep(max(0.0, (HUGE_FRAME_BYTES - left) / HUGE_BYTES_PER_S - (time.monotonic() - streaming)))
            piece = chunk[: min(left, HUGE_CHUNK)]
            try:
                conn.sendall(piece)
            except TimeoutError:
                continue  # the client is not reading (yet); the payload is all "x", so a partial send changes nothing
            left -= len(piece)
            self._count(sent=len(piece))


def _client_frame(buffer: bytes) -> tuple[int, int] | None:
    """(opcode, bytes consumed) of the first complete masked client frame in ``buffer``; None if incomplete."""
    if len(buffer) < 2:
        return None
    opcode, length = buffer[0] & 0x0F, buffer[1] & 0x7F
    offset = 2
    if length == 126:
        if len(buffer) < 4:
            return None
        (length,) = struct.unpack("!H", buffer[2:4])
        offset = 4
    elif length == 127:
        if len(buffer) < 10:
            return None
        (length,) = struct.unpack("!Q", buffer[2:10])
        offset = 10
    if length > MAX_CLIENT_FRAME_BYTES:
        raise OSError(f"client frame of {length} bytes")  # ends the connection (caught in _serve)
    end = offset + (4 if buffer[1] & 0x80 else 0) + length
    return (opcode, end) if len(buffer) >= end else None


@contextmanager
def hostile_ws(behaviour: Behaviour) -> Iterator[HostileWs]:
    server = HostileWs(behaviour).start()
    try:
        yield server
    finally:
        server.stop()
