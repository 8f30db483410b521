"""A durable work queue on RabbitMQ: competing worker processes, one job at a time each.

    class SyncWorker:
        name = "sync_worker"

        @work_queue("billing_sync.jobs")
        def run(self, message: dict, delivery: dict): ...

    WorkQueuePublisher("billing_sync.jobs")   # a dependency: self.jobs(message) enqueues

* The queue is durable and messages are persistent, so a broker restart loses no job.
* Each consuming process takes one message at a time (prefetch 1) and acknowledges it only
  after the handler has returned, so a worker killed mid-job (SIGKILL, power loss) loses
  nothing: RabbitMQ hands the unacknowledged message to another consumer, flagged
  `redelivered`. Handlers must therefore be idempotent (they get `delivery["redelivered"]`).
* A handler that raises is retried: the message goes back on the queue with its attempt count
  after a backoff (RETRY_BACKOFF * 2^(attempt-1), at most MAX_RETRY_DELAY), up to
  `max_attempts`; then it is dropped with an error in the log (the handler's own failure
  bookkeeping, e.g. a job marked failed, is where users see it).
* Adding a worker is starting another process; stopping one (SIGTERM) lets its current job
  finish within the grace period, or it is redelivered.

The consumer uses its own connection with heartbeats off: a job may hold the consuming
green thread for minutes, and a killed process closes its socket, which is what makes
RabbitMQ redeliver at once.
"""
import logging
import time

import eventlet
from eventlet.event import Event
from kombu import Connection, Consumer, Queue
from nameko.amqp.publish import Publisher
from nameko.extensions import DependencyProvider, Entrypoint

from roster.serialization import MAX_MESSAGE_BYTES  # noqa: F401  (the bus codec is registered on import)

logger = logging.getLogger(__name__)

ATTEMPT_HEADER = "x-roster-attempt"
RETRY_BACKOFF = 1.0
MAX_RETRY_DELAY = 60.0
DEFAULT_MAX_ATTEMPTS = 5
RECONNECT_DELAY = 2.0
STOP_GRACE = 8.0  # seconds stop() waits for the job in hand (the stack's grace period is 10 s)


def work_queue_declaration(name: str) -> Queue:
    """Return the durable queue `name` (bound to the default exchange under its own name)."""
    return Queue(name, durable=True, auto_delete=False, routing_key=name)


def retry_delay(attempt: int, *, base: float = RETRY_BACKOFF, maximum: float = MAX_RETRY_DELAY) -> float:
    """Return the seconds to wait before retrying a message whose `attempt`-th try failed."""
    return min(maximum, base * 2 ** max(0, attempt - 1))


def attempt_of(headers: dict | None) -> int:
    """Return which try the delivery of a message with these headers is (1 = first)."""
    try:
        return max(1, int((headers or {}).get(ATTEMPT_HEADER, 1)))
    except (TypeError, ValueError):
        return 1


def publish(amqp_uri: str, queue: str, message: dict, *, attempt: int = 1) -> None:
    """Put `message` on the durable queue `queue`, persistent, confirmed by the broker."""
    Publisher(amqp_uri, serializer="json", delivery_mode=2, use_confirms=True).publish(
        message, exchange=None, routing_key=queue, declare=[work_queue_declaration(queue)],
        headers={ATTEMPT_HEADER: attempt}, retry=True,
        retry_policy={"max_retries": 3, "interval_start": 0.2, "interval_step": 0.5, "interval_max": 1})


def queue_depth(amqp_uri: str, queue: str) -> tuple[int, int]:
    """Return (messages ready, consumers) of the queue, declaring it if it is not there yet."""
    with Connection(amqp_uri, connect_timeout=3) as conn:
        _, messages, consumers = work_queue_declaration(queue)(conn.default_channel).queue_declare()
        return messages, consumers


class WorkQueuePublisher(DependencyProvider):
    """Injects `enqueue(message)`, which puts a message on the work queue `queue`."""

    def __init__(self, queue: str):
        self.queue = queue

    def get_dependency(self, worker_ctx):
        uri = self.container.config["AMQP_URI"]
        return lambda message: publish(uri, self.queue, message)


class WorkQueueEntrypoint(Entrypoint):
    """Consumes a durable queue one message at a time; see the module docstring."""

    def __init__(self, queue: str, max_attempts: int = DEFAULT_MAX_ATTEMPTS, **kwargs):
        super().__init__(**kwargs)
        self.queue = queue
        self.max_attempts = max_attempts
        self._stopping = False
        self._stopped = Event()
        self._thread = None
        self._connection = None

    def start(self):
        self._thread = self.container.spawn_managed_thread(self._consume_forever)

    def stop(self):
        self._stopping = True
        # Let the job in hand finish and be acknowledged; past the grace it is redelivered.
        with eventlet.Timeout(STOP_GRACE, False):
            self._stopped.wait()
        if self._thread is not None:
            self._thread.kill()

    def kill(self):
        self._stopping = True
        if self._thread is not None:
            self._thread.kill()

    # ---- consuming ----

    def _consume_forever(self) -> None:
        uri = self.container.config["AMQP_URI"]
        try:
            while not self._stopping:
                try:
                    self._consume(uri)
                except Exception:  # the broker went away: reconnect (unacked work is redelivered)
                    if self._stopping:
                        break
                    logger.exception("work queue %s: connection lost; reconnecting in %.0fs",
                                     self.queue, RECONNECT_DELAY)
                    eventlet.sleep(RECONNECT_DELAY)
        finally:
            if not self._stopped.ready():
                self._stopped.send(True)

    def _consume(self, uri: str) -> None:
        with Connection(uri, heartbeat=0, connect_timeout=5) as connection:
            self._connection = connection
            channel = connection.channel()
            channel.basic_qos(prefetch_size=0, prefetch_count=1, a_global=False)
            queue = work_queue_declaration(self.queue)(channel)
            queue.declare()
            with Consumer(channel, queues=[queue], callbacks=[self._on_message],
                                     accept=["json"], prefetch_count=1):
                logger.info("work queue %s: consuming", self.queue)
                while not self._stopping:
                    try:
                        connection.drain_events(timeout=1)
                    except TimeoutError:
                        continue
                    except OSError as exc:
                        if "timed out" in str(exc):
                            continue
                        raise

    def _on_message(self, body, message) -> None:
        """Run the handler in a nameko worker, wait for it, then acknowledge (or retry)."""
        attempt = attempt_of(message.headers)
        delivery = {"redelivered": bool(message.delivery_info.get("redelivered")), "attempt": attempt}
        done = Event()

        def handle_result(worker_ctx, result, exc_info):
            done.send(exc_info)
            return result, exc_info

        self.container.spawn_worker(self, (body,), {"delivery": delivery}, handle_result=handle_result)
        exc_info = done.wait()
        if exc_info is not None:
            self._retry_or_drop(body, attempt, exc_info)
        message.ack()

    def _retry_or_drop(self, body, attempt: int, exc_info) -> None:
        if attempt >= self.max_attempts:
            logger.error("work queue %s: message dropped after %d attempts: %r (%s)", self.queue, attempt,
                         body, exc_info[1])
            return
        delay = retry_delay(attempt)
        logger.warning("work queue %s: attempt %d failed (%s: %s); retrying in %.1fs", self.queue, attempt,
                       exc_info[0].__name__, exc_info[1], delay)
        time.sleep(delay)  # holds this worker's one slot: a failing job does not spin through the queue
        # The retry is published before the original is acknowledged: a crash in between runs
        # the job twice (handlers are idempotent), never zero times.
        publish(self.container.config["AMQP_URI"], self.queue, body, attempt=attempt + 1)


work_queue = WorkQueueEntrypoint.decorator
