"""Throwaway vhosts on the real broker, through its management API."""
import os

from kombu import Connection

from tools.isolation import ManagementApi, create_vhost, delete_vhost, prune_vhosts, throwaway_vhost_name
from tools.stack import DEFAULT_AMQP_URI

BASE_URI = os.environ.get("AMQP_URI") or DEFAULT_AMQP_URI


def test_a_created_vhost_takes_connections_and_is_gone_once_deleted():
    vhost, uri = create_vhost(BASE_URI, prefix="roster_it")
    try:
        with Connection(uri, connect_timeout=5) as connection:
            connection.default_channel.queue_declare(queue="probe", durable=False, auto_delete=True)
        assert vhost in ManagementApi.from_environment(BASE_URI).vhosts()
    finally:
        delete_vhost(vhost, BASE_URI)

    assert vhost not in ManagementApi.from_environment(BASE_URI).vhosts()


def test_prune_deletes_a_leftover_and_keeps_a_fresh_one():
    api = ManagementApi.from_environment(BASE_URI)
    leftover = throwaway_vhost_name("roster_it", now=1_000_000_000)
    api.add_vhost(leftover)
    fresh, _ = create_vhost(BASE_URI, prefix="roster_it")
    try:
        deleted = prune_vhosts(BASE_URI)

        assert leftover in deleted
        assert fresh not in deleted
        assert fresh in api.vhosts()
    finally:
        delete_vhost(fresh, BASE_URI)
        delete_vhost(leftover, BASE_URI)
