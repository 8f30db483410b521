"""The OpenAPI 3 document, generated from the gateway's routes and their marshmallow schemas."""
import re

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from nameko.extensions import ENTRYPOINT_EXTENSIONS_ATTR

from gateway.http import ApiEndpoint

ERROR_SCHEMA = {
    "type": "object",
    "properties": {"code": {"type": "integer"}, "message": {"type": "string"}, "param": {"type": "string", "nullable": True}},
    "required": ["code", "message", "param"],
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
    for name, endpoint in sorted(_endpoints(service_cls), key=lambda found: (found[1].url, found[1].method)):
        path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", endpoint.url)
        methods = endpoint.method.split(",")
        for method in methods:
            operation_id = name if len(methods) == 1 else f"{name}_{method.lower()}"
            paths.setdefault(path, {})[method.lower()] = {"operationId": operation_id, **_operation(endpoint, path)}
    add_links(paths)
    for path, operations in paths.items():
        spec.path(path=path, operations=operations)
    return spec.to_dict()


def add_links(paths: dict[str, dict]) -> None:
    """Link each create (POST P answering a record) to what reads, changes and deletes it (P/{uuid}),
    so a client (and schemathesis' stateful phase) can follow create -> retrieve -> modify -> delete."""
    for path, operations in paths.items():
        create = operations.get("post")
        record_path = f"{path}/{{uuid}}"
        if create is None or record_path not in paths:
            continue
        success = next(code for code in create["responses"] if code != "default")
        links = {
            paths[record_path][method]["operationId"]: {
                "operationId": paths[record_path][method]["operationId"],
                "parameters": {"uuid": "$response.body#/uuid"},
            }
            for method in ("get", "patch", "put", "delete") if method in paths[record_path]
        }
        if links:
            create["responses"][success]["links"] = links


def _endpoints(service_cls):
    for name in dir(service_cls):
        for extension in getattr(getattr(service_cls, name), ENTRYPOINT_EXTENSIONS_ATTR, ()):
            if isinstance(extension, ApiEndpoint):
                yield name, extension


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
        # An empty body reads as {} (gateway.http.parse_json_body): one is needed only for required fields.
        required = any(field.required for field in endpoint.body_schema.fields.values())
        operation["requestBody"] = {
            "required": required, "content": {"application/json": {"schema": type(endpoint.body_schema)}},
        }
    elif endpoint.raw_body is not None:
        operation["requestBody"] = {"required": True, "content": endpoint.raw_body}
    success = {"description": "Success"}
    if endpoint.response_schema is not None:
        success["content"] = {"application/json": {"schema": type(endpoint.response_schema)}}
    operation["responses"][str(endpoint.status)] = success
    for status, description in endpoint.answers.items():  # bodiless, e.g. 304 when nothing changed
        operation["responses"][str(status)] = {"description": description}
    return operation
