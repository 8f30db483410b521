"""Real HTTP servers on 127.0.0.1 standing in for Clearbit and Gravatar (and for a customer's
website, to prove it is never contacted), with the answers the tests need: an image, 404, 500,
a slow answer, a huge one, HTML. Used by the client, service and end-to-end avatar tests."""
import struct
import threading
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit


def png_bytes() -> bytes:
    """A real 1×1 PNG."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00\xff\x00\x00"))
            + chunk(b"IEND", b""))


PNG = png_bytes()
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 64
WEBP = b"RIFF\x24\x00\x00\x00WEBPVP8 " + b"\x00" * 24


class StandIn:
    """A real HTTP server on 127.0.0.1: answers from a table of routes, records every request."""

    def __init__(self):
        self.routes = {}
        self.requests = []
        self.request_headers = []
        self.release = threading.Event()  # set at teardown, so slow handlers end
        self.bytes_sent = {}
        self.connections = 0  # every TCP connection accepted, whatever was (or was not) sent on it
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def setup(self):
                stand_in.connections += 1
                super().setup()

            def do_GET(self):
                stand_in.requests.append(self.path)
                stand_in.request_headers.append(dict(self.headers))
                route = stand_in.routes.get(urlsplit(self.path).path, not_found)
                try:
                    route(stand_in, self)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client hung up, as it should on a body it refuses

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self):
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


def answer(status, content_type=None, body=b"", headers=()):
    def route(stand_in, handler):
        handler.send_response(status)
        if content_type:
            handler.send_header("Content-Type", content_type)
        for name, value in headers:
            handler.send_header(name, value)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)
    return route


def not_found(stand_in, handler):
    answer(404, "text/plain", b"not found")(stand_in, handler)


def image(body=PNG, content_type="image/png"):
    return answer(200, content_type, body)


def redirect(location):
    return answer(302, "text/html", b"moved", headers=[("Location", location)])


def slow(stand_in, handler):
    stand_in.release.wait(10)  # beyond any read timeout used here
    answer(200, "image/png", PNG)(stand_in, handler)


def huge(declare_length: bool):
    total = 64 * 1024 * 1024

    def route(stand_in, handler):
        handler.send_response(200)
        handler.send_header("Content-Type", "image/png")
        if declare_length:
            handler.send_header("Content-Length", str(total))
        handler.end_headers()
        sent, block = 0, PNG + b"\x00" * (64 * 1024 - len(PNG))
        stand_in.bytes_sent[handler.path] = 0
        while sent < total:
            handler.wfile.write(block)
            sent += len(block)
            stand_in.bytes_sent[handler.path] = sent
    return route


def chunked(body: bytes, repeat: int = 1):
    """HTTP/1.1 chunked transfer, as CDNs send it: no Content-Length."""
    def route(stand_in, handler):
        handler.protocol_version = "HTTP/1.1"
        handler.send_response(200)
        handler.send_header("Content-Type", "image/png")
        handler.send_header("Transfer-Encoding", "chunked")
        handler.send_header("Connection", "close")
        handler.end_headers()
        for _ in range(repeat):
            handler.wfile.write(b"%x\r\n%s\r\n" % (len(body), body))
        handler.wfile.write(b"0\r\n\r\n")
    return route


def drip(stand_in, handler):
    """Each byte within the read timeout, the whole far beyond the total deadline."""
    handler.send_response(200)
    handler.send_header("Content-Type", "image/png")
    handler.send_header("Content-Length", "200")
    handler.end_headers()
    for byte in (PNG + b"\x00" * 200)[:200]:
        if stand_in.release.wait(0.1):
            return
        handler.wfile.write(bytes([byte]))
        handler.wfile.flush()
