"""The gateway's HTTP entrypoint: auth, JSON in and out, and errors mapped in one table.

Handlers are declared with `@api(method, url, permission=..., body=Schema, query=Schema)`.
The entrypoint checks the key's role, parses and validates the JSON body and the query
string with those marshmallow schemas (passed to the handler as `body=` and `query=`),
and renders what the handler returns: `(status, payload)` or just `payload`; a payload
of None is an empty body. Errors become `{"code", "message", "param"}` bodies.
"""
import logging
import time
from datetime import datetime
from functools import partial

import eventlet
import orjson
from eventlet.event import Event
from marshmallow import ValidationError
from nameko.exceptions import BadRequest as NamekoBadRequest
from nameko.web.handlers import HttpRequestHandler
from nameko.web.server import WebServer, WsgiApp
from werkzeug.exceptions import HTTPException
from werkzeug.routing import Map
from werkzeug.wrappers import Request, Response

from gateway.auth import READ, ApiKeys
from gateway.cache import RecordCache
from gateway.ratelimit import KeyRateLimits, TooManyRequests
from roster import config, metrics, tracing
from roster.errors import BadRequest, PayloadTooLarge, RosterError, from_marshmallow
from roster.rpc import DEADLINE, IDEMPOTENCY_KEY, SignatureOnce, deadline_after
from roster.timestamps import parse, render

logger = logging.getLogger(__name__)

JSON_TYPE = "application/json"
MAX_BODY_BYTES = 1024 * 1024  # per route: `@api(..., max_body=...)` for e.g. invoice batches
MAX_JSON_DEPTH = 32  # deeper than any request of the API needs


def json_response(status: int, payload) -> Response:
    body = b"" if payload is None else orjson.dumps(payload)
    return Response(body, status=status, mimetype=JSON_TYPE)


def error_response(status: int, message: str, param: str | None = None) -> Response:
    """Every error has the same three keys; `param` names the offending field, or is null."""
    return json_response(status, {"code": status, "message": message, "param": param or None})


def body_stream(request: Request):
    """Return the stream of the raw body, a chunked one included."""
    if request.content_length is None and "chunked" in request.headers.get("Transfer-Encoding", "").lower():
        # werkzeug reads no body without a Content-Length; the server's input decodes the chunks
        return request.environ["wsgi.input"]
    return request.stream


def read_body(request: Request, limit: int) -> bytes:
    """Return the raw body; 413 when it is larger than `limit` bytes (checked before reading it all)."""
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(f"The request body is larger than {limit} bytes")
    stream = body_stream(request)
    raw = stream.read(limit + 1)
    if len(raw) > limit:
        raise PayloadTooLarge(f"The request body is larger than {limit} bytes")
    return raw


def parse_json_body(raw: bytes) -> dict:
    """Return the JSON object in `raw` ({} when empty); 400 for what is not plain, sane JSON."""
    if not raw.strip():
        return {}
    try:
        body = orjson.loads(raw)  # also refuses invalid UTF-8
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"The request body is not valid JSON: {exc}")
    if not isinstance(body, dict):
        raise BadRequest("The request body must be a JSON object")
    check_plain(body)
    return body


def check_plain(value, limit: int = MAX_JSON_DEPTH) -> None:
    """Refuse JSON nested deeper than `limit`, and NUL characters in any key or string (400)."""
    stack = [(value, "", 1)]
    while stack:
        item, path, depth = stack.pop()
        if depth > limit:
            raise BadRequest(f"The request body is nested deeper than {limit} levels", param=path or None)
        if isinstance(item, dict):
            for key, child in item.items():
                name = f"{path}.{key}" if path else key
                if "\x00" in key:
                    raise BadRequest("Text may not contain NUL characters", param=path or None)
                stack.append((child, name, depth + 1))
        elif isinstance(item, list):
            stack.extend((child, f"{path}[{index}]", depth + 1) for index, child in enumerate(item))
        elif isinstance(item, str) and "\x00" in item:
            raise BadRequest(f"{path}: text may not contain NUL characters", param=path or None)


def refuse_nul(values: dict) -> None:
    """400 naming the first query or path parameter with a NUL character (no database stores one)."""
    for name, value in values.items():
        if "\x00" in name or (isinstance(value, str) and "\x00" in value):
            raise BadRequest(f"{name}: text may not contain NUL characters", param=name)


def load_query(schema, request: Request) -> dict:
    """Return the query string loaded through `schema`; a value of the wrong type is a 400."""
    args = request.args.to_dict()
    refuse_nul(args)
    try:
        return schema.load(args)
    except ValidationError as err:
        failure = from_marshmallow(err)
        raise BadRequest(failure.message, param=failure.param)


def load_body(schema, request: Request, limit: int = MAX_BODY_BYTES) -> dict:
    """Return the JSON body loaded through `schema`; a field that fails validation is a 422."""
    body = parse_json_body(read_body(request, limit))
    try:
        return schema.load(body)
    except ValidationError as err:
        raise from_marshmallow(err)


def etag(revision: datetime) -> str:
    """The ETag of a record at `revision` (its updated_at)."""
    return f'"{render(revision)}"'


def revision_of(response: Response) -> datetime | None:
    """The revision an answer's ETag names (None when it names none)."""
    value = (response.headers.get("ETag") or "").removeprefix("W/").strip('"')
    if not value:
        return None
    try:
        return parse(value, "ETag")
    except RosterError:
        return None


class JsonWsgiApp(WsgiApp):
    """nameko's WSGI app, but unknown paths and wrong methods answer in JSON too."""

    def __call__(self, environ, start_response):
        # Yield once per request. Without it a keep-alive connection whose next request is
        # already waiting is served again and again without a switch, starving the others
        # (p99 of 300+ ms at 32 connections, p50 under 1 ms).
        eventlet.sleep(0)
        # Bound to this green thread until its next request, so the access log line that
        # eventlet writes after the answer carries it too.
        request = Request(environ, shallow=True)
        request.request_id = request_id = tracing.accept(request.headers.get(tracing.HEADER))
        tracing.bind(request_id)
        adapter = self.url_map.bind_to_environ(environ)
        try:
            provider, values = adapter.match()
        except HTTPException as exc:
            response = error_response(exc.code or 500, exc.description or exc.name)
            response.headers[tracing.HEADER] = request_id
            metrics.HTTP_REQUESTS.labels(request.method, "(unmatched)", str(response.status_code)).inc()
            if getattr(exc, "valid_methods", None):  # 405 names what the path allows (RFC 9110)
                response.headers["Allow"] = ", ".join(exc.valid_methods)
            return response(environ, start_response)
        request.path_values = values
        return provider.handle_request(request)(environ, start_response)


class JsonWebServer(WebServer):
    def get_wsgi_app(self):
        return JsonWsgiApp(self)

    def make_url_map(self):
        url_map = Map(strict_slashes=False, merge_slashes=False)
        for provider in self._providers:
            rule = provider.get_url_rule()
            rule.endpoint = provider
            url_map.add(rule)
        return url_map


class ApiEndpoint(SignatureOnce, HttpRequestHandler):
    server = JsonWebServer()
    keys = ApiKeys()
    rate_limits = KeyRateLimits()
    record_cache = RecordCache()

    def __init__(self, method, url, permission=READ, body=None, query=None, response=None,
                 status=200, cache_key=None, write_key=None, summary="", max_body=MAX_BODY_BYTES, answers=None,
                 raw_body: dict | None = None, **kwargs):
        kwargs.setdefault("expected_exceptions", (RosterError,))
        super().__init__(method, url, **kwargs)
        self.permission = permission
        self.body_schema = body
        self.query_schema = query
        self.response_schema = response
        self.status = status
        self.cache_key = cache_key  # path value whose rendered answer may be served from memory
        self.write_key = write_key  # path value whose record this route changes (its answer is the record)
        self.summary = summary
        self.max_body = max_body
        # A route reading its own body (a file upload): its OpenAPI requestBody content, by media type.
        self.raw_body = raw_body
        self.answers = answers or {}  # other successful answers the route may give: {status: description}

    def handle_request(self, request):
        started = time.monotonic()
        response = self._answer(request)
        response.headers[tracing.HEADER] = request.request_id
        metrics.HTTP_REQUESTS.labels(request.method, self.url, str(response.status_code)).inc()
        metrics.HTTP_LATENCY.labels(request.method, self.url).observe(time.monotonic() - started)
        return response

    def _answer(self, request):
        try:
            if self.permission is not None:
                header = request.headers.get("Authorization")
                self.keys.authorize(header, self.permission)
                if self.rate_limits.enabled:
                    self.rate_limits.check(self.keys.scope_of(header))
            if self.cache_key is not None and not request.args:  # a read with options is rendered afresh
                return self._cached_read(request, request.path_values[self.cache_key])
            if self.write_key is not None:
                return self._write_through(request, request.path_values[self.write_key])
            return self._run_worker(request)
        except Exception as exc:
            return self.response_from_exception(exc)

    def _cached_read(self, request, key: str) -> Response:
        entry = self.record_cache.get(key)
        if entry is not None:
            metrics.CACHE_READS.labels("hit").inc()
            response = Response(entry.body, status=200, mimetype=JSON_TYPE)
            if entry.revision is not None:
                response.headers["ETag"] = etag(entry.revision)
            return response
        metrics.CACHE_READS.labels("miss").inc()
        token = self.record_cache.token(key)  # before the read, so a racing write wins
        response = self._run_worker(request)
        if response.status_code == 200:
            self.record_cache.put(key, response.get_data(), token, revision_of(response))
        return response

    def _write_through(self, request, key: str) -> Response:
        token = self.record_cache.token(key)  # before the write: any other change meanwhile shows
        response = self._run_worker(request)
        if response.status_code < 300:
            revision = revision_of(response) if response.status_code == 200 else None
            self.record_cache.written(key, response.get_data() if revision else None, token, revision)
        return response

    def _run_worker(self, request):
        request.shallow = False
        args, kwargs = self.get_entrypoint_parameters(request)
        self.check_signature(args, kwargs)
        event = Event()
        self.container.spawn_worker(
            self, args, kwargs, context_data=self.call_context(request), handle_result=partial(self.handle_result, event)
        )
        return self.response_from_result(event.wait())

    def call_context(self, request) -> dict:
        """What every RPC made for this request carries: its deadline, and the client's idempotency key."""
        context = {DEADLINE: deadline_after(config.rpc_timeout()), tracing.REQUEST_ID: request.request_id}
        key = request.headers.get("Idempotency-Key")
        if key:
            if len(key) > 255:
                raise BadRequest("Idempotency-Key: at most 255 characters", param="Idempotency-Key")
            # scoped by the API key, so two clients' keys never meet
            context[IDEMPOTENCY_KEY] = f"{self.keys.scope_of(request.headers.get('Authorization'))}:{key}"
        return context

    def get_entrypoint_parameters(self, request):
        kwargs = dict(request.path_values)
        refuse_nul(kwargs)
        if self.query_schema is not None:
            kwargs["query"] = load_query(self.query_schema, request)
        if self.body_schema is not None:
            kwargs["body"] = load_body(self.body_schema, request, self.max_body)
        return (request,), kwargs

    def response_from_result(self, result):
        """Render `payload`, `(status, payload)` or `(status, payload, headers)`; a Response passes as is."""
        if isinstance(result, Response):
            return result
        if not isinstance(result, tuple):
            return json_response(self.status, result)
        response = json_response(result[0], result[1])
        for name, value in (result[2] if len(result) > 2 else {}).items():
            response.headers[name] = value
        return response

    def response_from_exception(self, exc):
        if isinstance(exc, TooManyRequests):
            response = error_response(exc.status, exc.message)
            response.headers["Retry-After"] = str(exc.retry_after)
            return response
        if isinstance(exc, RosterError):
            return error_response(exc.status, exc.message, exc.param)
        if isinstance(exc, ValidationError):
            failure = from_marshmallow(exc)
            return error_response(failure.status, failure.message, failure.param)
        if isinstance(exc, NamekoBadRequest):
            return error_response(400, str(exc))
        logger.error("unexpected error answering a request", exc_info=exc)
        return error_response(500, "Internal error")


api = ApiEndpoint.decorator

__all__ = ["api", "ApiEndpoint"]
