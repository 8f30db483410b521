"""py-amqp's socket reads, buffered: one recv() takes whatever the broker has sent, not one field.

py-amqp reads a frame in three exact-size reads (its 7-byte header, its payload, its end
octet), and a message is three frames (method, properties, body): nine recv() calls per
message, each a syscall and, under eventlet, a green socket round of Python, however many
messages are already waiting on the socket. `install()` gives its plain TCP transport a read
that asks the socket for up to READ_AHEAD bytes and serves the frames that follow from what it
read: a burst of deliveries (a batch of events, the replies of concurrent RPC calls) costs one
recv().

What is buffered stays in the transport's own `_read_buffer`, as py-amqp keeps a partial read
there on a timeout, so its frame parser and its error paths work unchanged: only `_read` is
replaced. Nothing else reads the socket, and nothing polls it before reading (nameko's and
kombu's consumers, our work queue and broadcast all call drain_events, which reads the buffer
first), so a buffered frame never waits for more bytes to arrive. TLS connections keep
py-amqp's own read.
"""
import errno
import socket

from amqp import transport as amqp_transport

READ_AHEAD = 64 * 1024  # bytes asked of the socket at once (a frame is at most 128 kB: frame_max)


def _buffered_read(self, n: int, initial: bool = False, _errnos=(errno.EAGAIN, errno.EINTR)) -> bytes:
    """Return exactly `n` bytes: from what an earlier recv() read ahead, else read more (py-amqp's
    `TCPTransport._read`, asking for READ_AHEAD bytes at least)."""
    buffered = self._read_buffer
    if len(buffered) < n:
        rbuf = bytes(buffered)
        recv = self._quick_recv
        try:
            while len(rbuf) < n:
                try:
                    received = recv(max(n - len(rbuf), READ_AHEAD))
                except OSError as exc:
                    if exc.errno in _errnos:
                        if initial and self.raise_on_initial_eintr:
                            raise socket.timeout()
                        continue
                    raise
                if not received:
                    raise OSError("Server unexpectedly closed connection")
                rbuf += received
        except:  # noqa: E722  (as py-amqp: keep what was read, whatever interrupted the read)
            self._read_buffer = rbuf
            raise
        buffered = memoryview(rbuf)
    # A view: taking a frame's fields does not copy the rest of the buffer each time.
    self._read_buffer = buffered[n:]
    return bytes(buffered[:n])


def install() -> None:
    """Give py-amqp's TCP transport the buffered read (idempotent)."""
    amqp_transport.TCPTransport._read = _buffered_read


install()
