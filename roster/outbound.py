"""Reading an outbound HTTP answer's body within a size cap and a deadline (avatars, billing connectors).

A read timeout bounds each wait for bytes, not the whole body: a server that sends a byte every
few seconds never trips it. So the body is read in chunks with `read1` (what has arrived) and the
deadline is checked between reads; a body past the cap stops being read.
"""
import time

import urllib3


class BodyTooSlow(Exception):
    """The body was still arriving at the deadline."""


class BodyInterrupted(Exception):
    """Reading the body failed (timed out between bytes, or the connection broke); the cause is chained."""


def read_capped(response, *, max_bytes: int, deadline: float, chunk_bytes: int = 64 * 1024) -> tuple[bytes, bool]:
    """Return (the body, whether it is whole) of a `stream=True` requests response: at most
    `max_bytes`, read before `deadline` (time.monotonic()); BodyTooSlow or BodyInterrupted otherwise."""
    body = bytearray()
    try:
        while chunk := response.raw.read1(chunk_bytes, decode_content=False):
            body += chunk
            if len(body) > max_bytes:
                return bytes(body[:max_bytes]), False
            if time.monotonic() > deadline:
                raise BodyTooSlow()
    except (urllib3.exceptions.HTTPError, OSError) as error:
        raise BodyInterrupted(type(error).__name__) from error
    return bytes(body), True
