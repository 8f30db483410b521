"""The customer record web page (`/app/...`) and the small routes of ours it needs.

The page is static files in gateway/web/ (HTML, CSS, ES modules; no build step). It asks for an
API key once, keeps it in sessionStorage and calls /v1 with HTTP Basic like any client. Ours:
- `GET /v1/me`: the calling key's role, so the page shows edit controls only to keys that may
  change data, without trying a write (the key itself is never echoed);
- `GET /v1/customers/{uuid}/metrics`: the header's figures, net payments included (the customer
  JSON of the contract has no net payments);
- `GET /v1/customers/find?q=`: customers whose name, company or email contains the text (the
  customers service's `q` filter).

The page's files are served by `PageEndpoint`, an entrypoint on the gateway's one web server that
answers from memory without a worker and stays out of the OpenAPI document (it is not the API).
"""
from __future__ import annotations

import hashlib
import mimetypes
from pathlib import Path

from nameko.web.handlers import HttpRequestHandler
from werkzeug.wrappers import Request, Response

from gateway.auth import ADMIN, READ, ROLE_PERMISSIONS, WRITE
from gateway.http import JsonWebServer, api, error_response
from gateway.routes.customers import render_page
from gateway.routes.stream import CallerKeys
from gateway.schemas import app as schemas
from gateway.schemas.customers import CURRENCY_SIGNS
from roster.errors import ValidationFailed

WEB_ROOT = Path(__file__).resolve().parent.parent / "web"
INDEX = "index.html"
CONTENT_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                 ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml", ".png": "image/png",
                 ".ico": "image/x-icon", ".json": "application/json"}
# The page runs only its own files and talks only to this origin.
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' blob: data:; style-src 'self'; "
                               "script-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; "
                               "frame-ancestors 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",  # revalidated with the ETag: a new deployment shows at once
}


def load_web_files(root: Path = WEB_ROOT) -> dict[str, tuple[bytes, str, str]]:
    """Return {relative path: (body, content type, etag)} of every file under `root`."""
    files = {}
    for path in sorted(root.rglob("*")):
        if path.is_file():
            body = path.read_bytes()
            content_type = CONTENT_TYPES.get(path.suffix) or mimetypes.guess_type(path.name)[0] \
                or "application/octet-stream"
            files[path.relative_to(root).as_posix()] = (body, content_type, f'"{hashlib.sha256(body).hexdigest()[:32]}"')
    return files


class PageEndpoint(HttpRequestHandler):
    """Serves a file of gateway/web/ (`name` from the path, or a fixed one) from memory."""

    server = JsonWebServer()  # the gateway's one server: a second would split the port's traffic

    def __init__(self, url, file=None):
        super().__init__("GET", url)
        self.file = file

    def setup(self):
        super().setup()
        self.files = load_web_files()

    def handle_request(self, request: Request) -> Response:
        name = self.file or request.path_values.get("name", "")
        found = self.files.get(name)
        if found is None or name.startswith("."):
            return error_response(404, f"No such file of the web page: {name}")
        body, content_type, etag = found
        headers = {**PAGE_HEADERS, "ETag": etag}
        if request.if_none_match.contains(etag.strip('"')):
            response = Response(status=304, headers=headers)
            del response.headers["Content-Type"]
            return response
        return Response(body, status=200, headers={**headers, "Content-Type": content_type})


page = PageEndpoint.decorator


class AppRoutes:
    caller_keys = CallerKeys()

    # ---- the page's files ------------------------------------------------------------------------

    @page("/app/", file=INDEX)
    def app_home(self, request):
        """The customer list (served by the entrypoint)."""

    @page("/app/customers/<string:uuid>", file=INDEX)
    def app_customer(self, request, uuid):
        """A customer's record (the same page; its script reads the path)."""

    @page("/app/assets/<path:name>")
    def app_asset(self, request, name):
        """The page's scripts, styles and images."""

    # ---- API routes of ours the page uses --------------------------------------------------------

    @api("GET", "/v1/me", permission=READ, response=schemas.MeOut(),
         summary="The calling API key's role and what it may do (never the key itself)")
    def me(self, request):
        role = self.caller_keys.role_for(request.headers.get("Authorization"))
        allowed = ROLE_PERMISSIONS[role]
        return {"role": role, "can_read": READ in allowed, "can_write": WRITE in allowed,
                "can_admin": ADMIN in allowed}

    @api("GET", "/v1/customers/<string:uuid>/metrics", response=schemas.CustomerMetricsOut(),
         summary="A customer's figures as the record header shows them: MRR, ARR, net payments, status, "
                 "subscriber since")
    def customer_metrics(self, request, uuid):
        customer = self.customers_rpc.get_customer(uuid)
        currency = customer.get("currency")
        return {
            "customer_uuid": customer["uuid"],
            "status": customer.get("status"),
            "mrr": customer.get("mrr") or 0,
            "arr": customer.get("arr") or 0,
            "net_payments": customer.get("net_payments") or 0,
            "currency": currency,
            "currency-sign": CURRENCY_SIGNS.get(currency, currency),
            "customer-since": customer.get("customer_since"),
        }

    @api("GET", "/v1/customers/find", query=schemas.FindQuery(), response=schemas.FindPage(),
         summary="Customers whose name, company or email contains `q` (case-insensitive), oldest first")
    def find_customers(self, request, query):
        filters = {"q": query.get("q") or ""}
        if query.get("status"):
            filters["status"] = query["status"]
        if not filters["q"].strip():
            raise ValidationFailed("q: give some text to look for", param="q")
        page = self.customers_rpc.list_customers(filters, query.get("cursor"), query.get("per_page"))
        return render_page(page, query.get("per_page"))
