"""Checks schemathesis runs on every response of the fuzz (loaded with SCHEMATHESIS_HOOKS).

Kept in its own module because the schemathesis CLI imports it in its own process.
"""
import schemathesis


@schemathesis.check
def client_errors_are_code_message_param(ctx, response, case):
    """Every 4xx is the ChartMogul error body: {"code": <its status>, "message": text, "param": field or null}."""
    if not 400 <= response.status_code < 500:
        return None
    try:
        body = response.json()
    except Exception:
        raise AssertionError(f"{response.status_code} with a body that is not JSON: {response.content[:200]!r}")
    if not isinstance(body, dict) or not {"code", "message", "param"} <= set(body):
        raise AssertionError(f"{response.status_code} body lacks code/message/param: {body!r}"[:300])
    if body["code"] != response.status_code or not isinstance(body["message"], str) or not body["message"]:
        raise AssertionError(f"{response.status_code} body with a wrong code or an empty message: {body!r}"[:300])
    if body["param"] is not None and not isinstance(body["param"], str):
        raise AssertionError(f"param must be a field name or null: {body!r}"[:300])
    return None
