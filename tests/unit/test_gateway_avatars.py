"""The avatar route's pure parts: reading the avatars service's answer, and the HTTP response
(content type, ETag, caching, If-None-Match, and the headers that keep an SVG inert)."""
import base64

import pytest
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request

from gateway.routes.avatars import avatar_from_service, avatar_response
from services.avatars import domain
from services.avatars.domain import Avatar

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 24
LOGO = Avatar.of(source="clearbit", content_type="image/png", body=PNG)
INITIAL = domain.generated_avatar({"uuid": "cus_1", "company": "Acme"})


def request(**headers) -> Request:
    return Request(EnvironBuilder(path="/v1/customers/cus_1/avatar", headers=headers).get_environ())


def answer_for(avatar: Avatar) -> dict:
    return {"content_type": avatar.content_type, "body": base64.b64encode(avatar.body).decode(),
            "etag": avatar.etag, "source": avatar.source}


def test_the_services_answer_becomes_the_avatar_it_describes():
    assert avatar_from_service(answer_for(LOGO)) == LOGO
    assert avatar_from_service(answer_for(INITIAL)) == INITIAL


@pytest.mark.parametrize("answer", [
    None, {}, {**answer_for(LOGO), "body": "not base64!"}, {**answer_for(LOGO), "body": ""},
    {**answer_for(LOGO), "content_type": "text/html"}, {**answer_for(LOGO), "content_type": "image/svg+xml; x"},
])
def test_an_answer_that_is_not_a_servable_image_is_refused(answer):
    assert avatar_from_service(answer) is None


def test_the_etag_always_describes_the_bytes_served():
    assert avatar_from_service({**answer_for(LOGO), "etag": '"stale"'}).etag == LOGO.etag


def test_an_image_is_served_with_its_type_etag_and_caching():
    response = avatar_response(request(), LOGO, resolved=True)
    assert response.status_code == 200 and response.get_data() == PNG
    assert response.headers["Content-Type"] == "image/png"
    assert response.headers["ETag"] == LOGO.etag
    assert response.headers["Cache-Control"] == "private, max-age=300"
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_the_stand_in_initial_is_revalidated_every_time():
    response = avatar_response(request(), INITIAL, resolved=False)
    assert response.headers["Content-Type"] == "image/svg+xml"
    assert response.headers["Cache-Control"] == "private, no-cache"


def test_an_svg_cannot_run_or_load_anything():
    policy = avatar_response(request(), INITIAL, resolved=True).headers["Content-Security-Policy"]
    directives = {part.split()[0]: part.split()[1:] for part in policy.split(";")}
    assert directives["default-src"] == ["'none'"] and "sandbox" in directives
    assert "script-src" not in directives and "style-src" not in directives


@pytest.mark.parametrize("if_none_match", ['{etag}', 'W/{etag}', '"other", {etag}', '*'])
def test_a_current_copy_gets_a_304_without_a_body(if_none_match):
    response = avatar_response(request(**{"If-None-Match": if_none_match.format(etag=LOGO.etag)}), LOGO,
                               resolved=True)
    assert response.status_code == 304 and response.get_data() == b""
    assert response.headers["ETag"] == LOGO.etag and "Content-Type" not in response.headers
    assert response.headers["Cache-Control"] == "private, max-age=300"


def test_a_stale_copy_gets_the_image():
    response = avatar_response(request(**{"If-None-Match": INITIAL.etag}), LOGO, resolved=True)
    assert response.status_code == 200 and response.get_data() == PNG
