"""What operators see of the running platform: /healthz, /readyz, /metrics (gateway and services),
request ids across the gateway, RPC and events, and no key in any log (docs/operations.md)."""
import base64
import re
import uuid

import requests

from tests.avatar_stand_ins import answer
from tests.e2e.support import eventually


def log_text(stack, name: str) -> str:
    return "".join(path.read_text(errors="replace") for path in stack.log_paths(name) if path.exists())


def test_healthz_answers_without_a_key_and_without_asking_anyone(http):
    response = http.get("/healthz", role=None)

    assert response.status_code == 200 and response.json() == {"status": "ok"}
    assert re.fullmatch(r"[0-9a-f]{32}", response.headers["X-Request-Id"])


def test_readyz_names_every_service_and_the_broker(http):
    response = http.get("/readyz", role=None)

    assert response.status_code == 200, response.text
    assert response.json()["checks"] == {name: "ok" for name in (
        "customers", "contacts", "billing_sync", "activities", "avatars", "broker")}


def test_the_gateway_metrics_count_requests_by_route_template_and_status(http):
    http.get(f"/v1/customers/cus_{uuid.uuid4().hex}")  # 404 through the customers service
    http.get("/v1/ping", role=None)  # 401

    text = http.get("/metrics", role=None).text

    assert 'roster_http_requests_total{method="GET",route="/v1/customers/<uuid>",status="404"}' in text
    assert 'roster_http_requests_total{method="GET",route="/v1/ping",status="401"}' in text
    assert 'roster_http_request_duration_seconds_bucket{le="0.1",method="GET",route="/v1/ping"}' in text
    assert re.search(r'roster_rpc_client_duration_seconds_count\{method="\w+",outcome="refused",service="customers"\}',
                     text)
    assert "uuid=" not in text  # labels are route templates, never values


def test_each_service_serves_its_own_metrics(stack, http):
    data_source = http.post("/v1/data_sources", json={"name": "Metrics"}).json()["uuid"]
    created = http.post("/v1/customers", json={"data_source_uuid": data_source, "external_id": uuid.uuid4().hex,
                                               "name": "Metered"})
    assert created.status_code == 201, created.text

    def customers_metrics():
        text = requests.get(f"http://127.0.0.1:{stack.metrics_port('customers')}/metrics", timeout=5).text
        return text if 'roster_events_published_total{event_type="customer_created",service="customers"}' in text \
            else None

    text = eventually(customers_metrics)
    assert 'roster_outbox_backlog{service="customers"}' in text
    assert 'roster_worker_duration_seconds_count{entrypoint="create_customer",kind="rpc",outcome="ok",' \
           'service="customers"}' in text
    avatars = requests.get(f"http://127.0.0.1:{stack.metrics_port('avatars')}/metrics", timeout=5).text
    assert "roster_events_handled_total" in avatars
    assert requests.get(f"http://127.0.0.1:{stack.metrics_port('billing_sync')}/metrics", timeout=5).ok
    # the sync workers are several processes sharing one port (prometheus_client's multiprocess mode)
    assert requests.get(f"http://127.0.0.1:{stack.metrics_port('sync_worker')}/metrics", timeout=5).ok
    # the depth of the sync work queue, which ops scale the workers on
    gateway = requests.get(f"{stack.gateway_url}/metrics", timeout=5).text
    assert 'roster_queue_messages{queue="billing_sync.sync_jobs"}' in gateway


def test_a_request_id_follows_the_request_into_services_and_event_consumers(stack, http, avatar_sources):
    request_id = f"e2e-{uuid.uuid4().hex}"
    domain = f"rid-{uuid.uuid4().hex[:10]}.com"
    avatar_sources.clearbit.routes[f"/{domain}"] = answer(500)  # the avatars consumer logs the failure
    data_source = http.post("/v1/data_sources", json={"name": "Traced"}).json()["uuid"]
    body = {"data_source_uuid": data_source, "external_id": uuid.uuid4().hex, "name": "Traced",
            "website_url": f"https://{domain}"}
    created = http.post("/v1/customers", json=body, headers={"X-Request-Id": request_id})
    again = http.post("/v1/customers", json=body, headers={"X-Request-Id": request_id})  # customers logs the 422

    assert created.status_code == 201 and created.headers["X-Request-Id"] == request_id
    assert again.status_code == 422
    eventually(lambda: request_id in log_text(stack, "gateway"))  # the access log line
    eventually(lambda: request_id in log_text(stack, "customers"))  # the expected error, logged by the service
    eventually(lambda: request_id in log_text(stack, "avatars"))  # the consumer of customer_created


def test_a_forged_request_id_is_replaced(http):
    response = http.get("/healthz", role=None, headers={"X-Request-Id": "x" * 300})

    assert re.fullmatch(r"[0-9a-f]{32}", response.headers["X-Request-Id"])


def test_no_key_or_authorization_value_is_ever_logged(stack, http, api_keys):
    wrong = f"wrong-{uuid.uuid4().hex}"
    http.get("/v1/ping", role=None, auth=(wrong, ""))  # 401
    http.get(f"/v1/ping?api_key={api_keys['owner']}")  # a key in the query string
    http.post("/v1/customers", role="read_only", json={})  # 403
    http.get("/v1/customers?per_page=1")
    secrets = [*api_keys.values(), wrong]
    secrets += [base64.b64encode(f"{key}:".encode()).decode() for key in secrets]

    eventually(lambda: "/v1/customers?per_page" in log_text(stack, "gateway"))
    for name in stack.services:
        text = log_text(stack, name)
        assert not [secret for secret in secrets if secret in text], f"a key in the log of {name}"
