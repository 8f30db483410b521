"""The platform comes up as a whole: every service answers, the gateway speaks the API."""
import chartmogul
from nameko.standalone.rpc import ClusterRpcProxy

from tools.stack import SERVICES


def test_every_service_answers_health_and_the_official_client_pings(stack, amqp_uri, cm_config):
    with ClusterRpcProxy({"AMQP_URI": amqp_uri}, timeout=10) as cluster:
        for name in SERVICES:
            if name != "gateway":
                assert getattr(cluster, name).health() == {"service": name, "status": "ok", "database": "ok"}

    pong = chartmogul.Ping.ping(cm_config("read_only")).get()

    assert pong.data == "pong!"


def test_ping_without_a_key_is_a_401_with_a_json_body(http):
    response = http.get("/v1/ping", role=None)

    assert response.status_code == 401
    assert response.headers["Content-Type"].startswith("application/json")
    body = response.json()
    assert body["code"] == 401
    assert body["message"]
