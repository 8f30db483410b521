"""Shared by the integration tests: real service containers on the test's vhost, and polling."""
import time
from contextlib import contextmanager

import eventlet
from nameko.containers import ServiceContainer
from nameko.standalone.rpc import ClusterRpcProxy


@contextmanager
def running(amqp_uri: str, *service_classes, timeout: float = 15):
    """Start one container per class (a class given twice runs twice); yield an RPC proxy to them."""
    containers = [ServiceContainer(cls, {"AMQP_URI": amqp_uri}) for cls in service_classes]
    for container in containers:
        container.start()
    try:
        with ClusterRpcProxy({"AMQP_URI": amqp_uri}, timeout=timeout) as proxy:
            yield proxy
    finally:
        for container in containers:
            container.stop()


def eventually(check, timeout: float = 10.0):
    """Return `check()` once it stops raising AssertionError; re-raise it after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return check()
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            eventlet.sleep(0.1)
