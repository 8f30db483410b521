"""Ping (the client's auth check) and the OpenAPI document."""
from functools import lru_cache

from gateway.http import api
from gateway.openapi import build_openapi


@lru_cache(maxsize=None)
def _openapi_for(service_cls) -> dict:
    return build_openapi(service_cls)


class MetaRoutes:
    @api("GET", "/v1/ping", summary="Check the API key")
    def ping(self, request):
        return {"data": "pong!"}

    @api("GET", "/v1/openapi.json", permission=None, summary="This API's OpenAPI 3 document")
    def openapi(self, request):
        return _openapi_for(type(self))
