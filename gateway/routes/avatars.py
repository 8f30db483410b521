"""A customer's avatar image: `GET /v1/customers/{uuid}/avatar` (beyond ChartMogul's API).

The avatars service answers with the cached image (Clearbit logo, Gravatar or generated
initial). When it has none yet, is away or answers something odd, the generated initial is
computed here from the customer record: `services.avatars.domain` is pure code, the one
module of a service the gateway imports (docs/architecture.md), so the route never fails for
a customer that exists. A customer the customers service does not know is a 404.
"""
import base64
import binascii
import logging

from werkzeug.http import unquote_etag
from werkzeug.wrappers import Request, Response

from gateway.http import api
from roster.errors import NotFound, RosterError
from services.avatars.domain import INITIALS_CONTENT_TYPE, REMOTE_IMAGE_TYPES, Avatar, generated_avatar

log = logging.getLogger(__name__)

AVATAR_RPC_TIMEOUT = 1.0  # seconds: past this the generated initial is served instead
SERVABLE_TYPES = REMOTE_IMAGE_TYPES | {INITIALS_CONTENT_TYPE}
# Browsers keep a resolved avatar a few minutes; a stand-in initial is revalidated every time,
# so the resolved image replaces it as soon as there is one.
RESOLVED_CACHE_CONTROL = "private, max-age=300"
PROVISIONAL_CACHE_CONTROL = "private, no-cache"
# An SVG opened on its own is a document: no scripts, no loads, no framing, sandboxed.
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'; sandbox",
}


def avatar_from_service(answer) -> Avatar | None:
    """Return the avatars service's `get_avatar` answer as an Avatar; None when it is not one to serve."""
    try:
        content_type, source = answer["content_type"], answer["source"]
        body = base64.b64decode(answer["body"], validate=True)
    except (KeyError, TypeError, ValueError, binascii.Error):
        return None
    if content_type not in SERVABLE_TYPES or not body:
        return None
    return Avatar.of(source=source, content_type=content_type, body=body)  # the ETag always matches the bytes


def avatar_response(request: Request, avatar: Avatar, *, resolved: bool) -> Response:
    """Return the image with its ETag and caching headers, or a 304 when the client's copy is current."""
    headers = {
        "ETag": avatar.etag,
        "Cache-Control": RESOLVED_CACHE_CONTROL if resolved else PROVISIONAL_CACHE_CONTROL,
        **SECURITY_HEADERS,
    }
    if request.if_none_match.contains_weak(unquote_etag(avatar.etag)[0]):
        response = Response(status=304, headers=headers)
        del response.headers["Content-Type"]
        return response
    return Response(avatar.body, status=200, headers={**headers, "Content-Type": avatar.content_type})


class AvatarRoutes:
    @api("GET", "/v1/customers/<uuid>/avatar",
         summary="A customer's avatar image (Clearbit logo, Gravatar or generated initial); "
                 "ETag and If-None-Match supported")
    def get_customer_avatar(self, request, uuid):
        cached = self._cached_avatar(uuid)
        if cached is not None:
            return avatar_response(request, cached, resolved=True)
        customer = self.customers_rpc.get_customer(uuid)  # an unknown customer is the 404
        return avatar_response(request, generated_avatar(customer), resolved=False)

    def _cached_avatar(self, uuid: str) -> Avatar | None:
        try:
            answer = self.avatars_rpc.get_avatar(uuid)
        except NotFound:
            return None  # not resolved yet (or not a customer: the customers service decides)
        except RosterError as error:
            log.info("avatar of %s: avatars service unavailable (%s); serving the initial", uuid, error)
            return None
        except Exception:
            log.warning("avatar of %s: the avatars service failed; serving the initial", uuid, exc_info=True)
            return None
        avatar = avatar_from_service(answer)
        if avatar is None:
            log.warning("avatar of %s: the avatars service answered no servable image", uuid)
        return avatar
