"""The shared event plumbing on a real broker: the outbox publishes what a worker recorded,
republishes what a crash left behind, and a failing durable handler retries without spinning."""
import time

import eventlet
import pytest
from eventlet.event import Event
from nameko.containers import ServiceContainer
from nameko.events import event_handler
from nameko.rpc import rpc
from nameko.standalone.events import event_dispatcher
from nameko.standalone.rpc import ClusterRpcProxy
from sqlalchemy import String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from roster.database import Database
from roster.events import Outbox, OutboxRowMixin, durable_event_handler, envelope


class Base(DeclarativeBase):
    pass


class Note(Base):
    __tablename__ = "notes"
    text: Mapped[str] = mapped_column(String(100), primary_key=True)


class OutboxRow(OutboxRowMixin, Base):
    pass


class NoteTaker:
    name = "note_taker"
    db = Database(Base)
    outbox = Outbox(OutboxRow, "db")

    @rpc
    def take(self, text):
        with self.db.begin() as session:
            session.add(Note(text=text))
            self.outbox(session, "note_taken", text=text)

    @rpc
    def fail_after_recording(self, text):
        with self.db.begin() as session:
            self.outbox(session, "note_taken", text=text)
            raise ValueError("rolled back")


class Listener:
    name = "note_listener"
    heard: list = []

    @event_handler("note_taker", "note_taken")
    def on_note(self, payload):
        Listener.heard.append(payload)


@pytest.fixture()
def containers(amqp_uri, own_database):
    Listener.heard = []
    started = [ServiceContainer(cls, {"AMQP_URI": amqp_uri}) for cls in (Listener, NoteTaker)]
    for container in started:
        container.start()
    yield started
    for container in started:
        container.stop()


def wait_for(condition, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        eventlet.sleep(0.05)


def test_outbox_publishes_committed_events_only(containers, amqp_uri):
    with ClusterRpcProxy({"AMQP_URI": amqp_uri}, timeout=10) as cluster:
        cluster.note_taker.take("kept")
        with pytest.raises(Exception):
            cluster.note_taker.fail_after_recording("rolled back")

    wait_for(lambda: Listener.heard)
    eventlet.sleep(0.5)
    assert [payload["text"] for payload in Listener.heard] == ["kept"]
    assert Listener.heard[0]["version"] == 1 and Listener.heard[0]["event_id"]


def test_outbox_republishes_what_a_crash_left_unpublished(containers):
    note_taker = containers[1]
    database = next(dep for dep in note_taker.dependencies if dep.attr_name == "db")
    with database.sessions.begin() as session:  # committed, as if the process died before publishing
        session.add(OutboxRow(event_type="note_taken", payload=envelope(text="left behind")))

    wait_for(lambda: Listener.heard, timeout=6)
    assert [payload["text"] for payload in Listener.heard] == ["left behind"]


class Flaky:
    name = "flaky_consumer"
    attempts: list = []
    done: Event = None

    @durable_event_handler("flaky_source", "thing_happened")
    def handle(self, payload):
        Flaky.attempts.append(time.monotonic())
        if len(Flaky.attempts) == 1:
            raise RuntimeError("not yet")
        Flaky.done.send(payload)


def test_a_failed_event_is_retried_after_a_pause_not_lost_or_spun(amqp_uri):
    Flaky.attempts, Flaky.done = [], Event()
    container = ServiceContainer(Flaky, {"AMQP_URI": amqp_uri})
    container.start()
    try:
        event_dispatcher({"AMQP_URI": amqp_uri})("flaky_source", "thing_happened", {"n": 1})
        with eventlet.Timeout(10):
            assert Flaky.done.wait() == {"n": 1}
    finally:
        container.stop()
    assert len(Flaky.attempts) == 2
    assert Flaky.attempts[1] - Flaky.attempts[0] >= 0.9


def test_outbox_prunes_only_old_published_rows(containers):
    from datetime import timedelta

    from roster.events import utcnow

    note_taker = containers[1]
    outbox = next(dep for dep in note_taker.dependencies if dep.attr_name == "outbox")
    with outbox.database.sessions.begin() as session:
        session.add_all([
            OutboxRow(event_type="old", payload={}, published_at=utcnow() - timedelta(days=8)),
            OutboxRow(event_type="recent", payload={}, published_at=utcnow() - timedelta(days=1)),
        ])

    outbox.prune_published()

    with outbox.database.sessions() as session:
        assert sorted(row.event_type for row in session.query(OutboxRow)) == ["recent"]
