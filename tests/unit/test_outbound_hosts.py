"""Outbound HTTP goes only to the configured hosts: a billing API answering with a redirect to
another host is refused, and that host never sees a request (nor the Bearer key).
(The avatars side: tests/e2e/test_avatars.py points customer websites at 127.0.0.1.)"""
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from services.billing_sync.connectors.errors import UpstreamRejected
from services.billing_sync.connectors.stripe import StripeClient


def serve(handle):
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            handle(self)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    return server


@pytest.fixture()
def elsewhere():
    seen = []

    def handle(handler):
        seen.append((handler.path, handler.headers.get("Authorization")))
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.end_headers()
        handler.wfile.write(b'{"object": "customer"}')

    server = serve(handle)
    server.seen = seen
    yield server
    server.shutdown()
    server.server_close()


def test_the_billing_client_never_follows_a_redirect_to_another_host(elsewhere):
    target = f"http://127.0.0.1:{elsewhere.server_address[1]}/stolen"

    def redirect(handler):
        handler.send_response(302)
        handler.send_header("Location", target)
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    billing = serve(redirect)
    try:
        client = StripeClient(f"http://127.0.0.1:{billing.server_address[1]}", "sk_secret", max_retries=0)
        with pytest.raises(UpstreamRejected):
            client.get("/v1/customers/cus_1")
    finally:
        billing.shutdown()
        billing.server_close()
    assert elsewhere.seen == []
