"""The OpenAPI 3 document, generated from the gateway's routes and their marshmallow schemas."""
import re

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from nameko.extensions import ENTRYPOINT_EXTENSIONS_ATTR

from gateway.http import ApiEndpoint

ERROR_SCHEMA = {
    "type": "object",
    "properties": {"code": {"type": "integer"}, "message": {"type": "string"}, "param": {"type": "string"}},
    "required": ["code", "message"],
}


def build_openapi(service_cls) -> dict:
    """Return the OpenAPI document describing every `@api` route of `service_cls`."""
    spec = APISpec(
        title="Roster API", version="1.0.0", openapi_version="3.0.3", plugins=[MarshmallowPlugin()],
        info={"description": "ChartMogul REST API v1 compatible customer records."},
    )
    spec.components.schema("Error", ERROR_SCHEMA)
    spec.components.security_scheme("apiKey", {"type": "http", "scheme": "basic"})
    paths: dict[str, dict] = {}
    for endpoint in sorted(_endpoints(service_cls), key=lambda e: (e.url, e.method)):
        path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", endpoint.url)
        for method in endpoint.method.split(","):
            paths.setdefault(path, {})[method.lower()] = _operation(endpoint, path)
    for path, operations in paths.items():
        spec.path(path=path, operations=operations)
    return spec.to_dict()


def _endpoints(service_cls):
    for name in dir(service_cls):
        for extension in getattr(getattr(service_cls, name), ENTRYPOINT_EXTENSIONS_ATTR, ()):
            if isinstance(extension, ApiEndpoint):
                yield extension


def _operation(endpoint: ApiEndpoint, path: str) -> dict:
    operation = {
        "summary": endpoint.summary,
        "parameters": [
            {"in": "path", "name": name, "required": True, "schema": {"type": "string"}}
            for name in re.findall(r"{(\w+)}", path)
        ],
        "responses": {
            "default": {"description": "Error", "content": {"application/json": {"schema": "Error"}}},
        },
    }
    if endpoint.permission is not None:
        operation["security"] = [{"apiKey": []}]
    if endpoint.query_schema is not None:
        operation["parameters"].append({"in": "query", "schema": type(endpoint.query_schema)})
    if endpoint.body_schema is not None:
        operation["requestBody"] = {
            "required": True, "content": {"application/json": {"schema": type(endpoint.body_schema)}},
        }
    elif endpoint.raw_body is not None:
        operation["requestBody"] = {"required": True, "content": endpoint.raw_body}
    success = {"description": "Success"}
    if endpoint.response_schema is not None:
        success["content"] = {"application/json": {"schema": type(endpoint.response_schema)}}
    operation["responses"][str(endpoint.status)] = success
    return operation
