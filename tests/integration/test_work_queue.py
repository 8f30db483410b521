"""roster/work_queue.py on a real broker, through a toy service: one message at a time per
process, acknowledged after the handler, a failing handler retried with its attempt count, a
message dropped after its last attempt, competing consumers sharing the queue."""
import time

import eventlet
import pytest
from kombu import Connection
from nameko.containers import ServiceContainer

import roster.work_queue
from roster.work_queue import publish, work_queue, work_queue_declaration

QUEUE = "toy.work"


class Toy:
    name = "toy_worker"
    seen: list = []
    done: list = []
    fail_until: int = 0
    running = 0
    most_at_once = 0

    @work_queue(QUEUE, max_attempts=3)
    def work(self, message, delivery):
        Toy.running += 1
        Toy.most_at_once = max(Toy.most_at_once, Toy.running)
        try:
            Toy.seen.append((message["n"], delivery["attempt"], delivery["redelivered"]))
            eventlet.sleep(message.get("sleep", 0))
            if delivery["attempt"] <= Toy.fail_until:
                raise RuntimeError("not yet")
            Toy.done.append(message["n"])
        finally:
            Toy.running -= 1


def ready(amqp_uri) -> tuple[int, int]:
    with Connection(amqp_uri) as connection:
        _, messages, consumers = work_queue_declaration(QUEUE)(connection.default_channel).queue_declare()
        return messages, consumers


@pytest.fixture()
def toy(amqp_uri, monkeypatch):
    monkeypatch.setattr(roster.work_queue, "RETRY_BACKOFF", 0.1)
    Toy.seen, Toy.done, Toy.fail_until, Toy.running, Toy.most_at_once = [], [], 0, 0, 0
    containers = []

    def start(count: int = 1):
        for _ in range(count):
            container = ServiceContainer(Toy, {"AMQP_URI": amqp_uri})
            container.start()
            containers.append(container)
        deadline = time.monotonic() + 10
        while ready(amqp_uri)[1] < len(containers):
            assert time.monotonic() < deadline, "the consumers did not start"
            eventlet.sleep(0.05)

    yield start
    for container in containers:
        container.stop()


def wait_for(check, timeout=10):
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline
        eventlet.sleep(0.05)


def test_one_message_at_a_time_per_process_acknowledged_when_done(toy, amqp_uri):
    toy(1)
    for n in range(3):
        publish(amqp_uri, QUEUE, {"n": n, "sleep": 0.2})
    wait_for(lambda: len(Toy.seen) == 3)
    assert Toy.most_at_once == 1  # prefetch 1: the next waits for the first's acknowledgement
    wait_for(lambda: ready(amqp_uri)[0] == 0)


def test_two_processes_share_the_queue_and_a_long_job_holds_back_nothing(toy, amqp_uri):
    toy(2)
    publish(amqp_uri, QUEUE, {"n": 0, "sleep": 1.5})
    for n in range(1, 5):
        publish(amqp_uri, QUEUE, {"n": n, "sleep": 0.1})
    wait_for(lambda: len(Toy.done) == 5)
    assert Toy.most_at_once == 2
    # Prefetch 1: the process busy with the long job reserves nothing else, so the other
    # process does all the short ones meanwhile.
    assert Toy.done[-1] == 0


def test_a_failing_handler_is_retried_then_the_message_dropped(toy, amqp_uri):
    toy(1)
    Toy.fail_until = 1
    publish(amqp_uri, QUEUE, {"n": 1})
    wait_for(lambda: len(Toy.seen) == 2)
    assert [attempt for _, attempt, _ in Toy.seen] == [1, 2]  # succeeded on the second try
    Toy.fail_until, Toy.seen = 99, []
    publish(amqp_uri, QUEUE, {"n": 2})
    wait_for(lambda: len(Toy.seen) == 3)
    eventlet.sleep(0.5)
    assert [attempt for _, attempt, _ in Toy.seen] == [1, 2, 3]  # max_attempts, then dropped
    assert ready(amqp_uri)[0] == 0
