"""roster.transport: py-amqp's TCP transport reads ahead and parses frames from what it read."""
import socket
import struct

import pytest
from amqp.transport import TCPTransport

from roster import transport


def frame(kind: int, channel: int, payload: bytes) -> bytes:
    return struct.pack(">BHI", kind, channel, len(payload)) + payload + b"\xce"


class Socket:
    """A socket whose recv() hands out the scripted chunks, at most what it is asked for (an
    exception in the script is raised)."""

    def __init__(self, *chunks):
        self.chunks = list(chunks)
        self.asked: list[int] = []

    def recv(self, size: int) -> bytes:
        self.asked.append(size)
        chunk = self.chunks.pop(0)
        if isinstance(chunk, Exception):
            raise chunk
        if len(chunk) > size:
            chunk, rest = chunk[:size], chunk[size:]
            self.chunks.insert(0, rest)
        return chunk


def over(sock: Socket) -> TCPTransport:
    wire = TCPTransport("127.0.0.1:5672")
    wire.sock = sock
    wire._read_buffer = b""
    wire._quick_recv = sock.recv
    return wire


def test_the_buffered_read_is_what_py_amqp_uses():
    assert TCPTransport._read is transport._buffered_read


def test_a_burst_of_frames_costs_one_recv():
    frames = [frame(1, 1, b"method %d" % n) for n in range(50)]
    sock = Socket(b"".join(frames))
    wire = over(sock)
    read = [wire.read_frame() for _ in frames]
    assert read == [(1, 1, b"method %d" % n) for n in range(50)]
    assert len(sock.asked) == 1 and sock.asked[0] >= transport.READ_AHEAD


def test_a_frame_split_across_recvs_is_put_together():
    whole = frame(3, 2, b"x" * 100_000) + frame(8, 0, b"")
    sock = Socket(whole[:5], whole[5:70_000], whole[70_000:])
    wire = over(sock)
    assert wire.read_frame() == (3, 2, b"x" * 100_000)
    assert wire.read_frame() == (8, 0, b"")


def test_a_timeout_in_the_middle_of_a_frame_loses_nothing():
    whole = frame(3, 1, b"body" * 10) + frame(1, 1, b"next")
    sock = Socket(whole[:20], socket.timeout(), whole[20:])
    wire = over(sock)
    with pytest.raises(socket.timeout):
        wire.read_frame()
    assert wire.read_frame() == (3, 1, b"body" * 10)
    assert wire.read_frame() == (1, 1, b"next")


def test_a_closed_connection_is_an_error():
    wire = over(Socket(frame(1, 1, b"abc")[:4], b""))
    with pytest.raises(OSError, match="unexpectedly closed"):
        wire.read_frame()


def test_a_bad_frame_end_is_still_refused():
    from amqp.exceptions import UnexpectedFrame

    wire = over(Socket(frame(1, 1, b"abc")[:-1] + b"\x00"))
    with pytest.raises(UnexpectedFrame):
        wire.read_frame()
