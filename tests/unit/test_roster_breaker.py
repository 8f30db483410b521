"""roster.breaker: a source that keeps failing is not asked for a while, then one trial decides."""
import pytest

from roster.breaker import CLOSED, HALF_OPEN, OPEN, CircuitBreaker, CircuitOpen


class Outage(Exception):
    pass


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


class Source:
    """Counts the calls that reach it; fails while `down`."""

    def __init__(self):
        self.calls = 0
        self.down = True

    def __call__(self, value="image"):
        self.calls += 1
        if self.down:
            raise Outage("connection refused")
        return value


@pytest.fixture
def clock():
    return Clock()


def breaker(clock, **kwargs):
    return CircuitBreaker("test source", failures=3, cool_down=30, counted=(Outage,), clock=clock, **kwargs)


def half_open(clock):
    """A circuit opened by three failures of `source`, its cool-down over."""
    circuit, source = breaker(clock), Source()
    fail(circuit, source, 3)
    clock.now += 30
    return circuit, source


def fail(circuit, source, times):
    for _ in range(times):
        with pytest.raises(Outage):
            circuit.call(source)


def test_it_opens_after_the_failures_in_a_row_and_then_refuses_without_asking(clock):
    circuit, source = breaker(clock), Source()
    fail(circuit, source, 2)
    assert circuit.state == CLOSED
    fail(circuit, source, 1)
    assert circuit.state == OPEN
    clock.now += 29
    with pytest.raises(CircuitOpen) as refused:
        circuit.call(source)
    assert source.calls == 3  # the refused call never reached the source
    assert refused.value.retry_in == pytest.approx(1.0)
    assert "test source" in str(refused.value)


def test_a_success_in_between_starts_the_count_again(clock):
    circuit, source = breaker(clock), Source()
    fail(circuit, source, 2)
    source.down = False
    assert circuit.call(source, "logo") == "logo"
    source.down = True
    fail(circuit, source, 2)
    assert circuit.state == CLOSED


def test_after_the_cool_down_one_trial_closes_it_when_the_source_answers(clock):
    circuit, source = half_open(clock)
    assert circuit.state == HALF_OPEN
    source.down = False
    assert circuit.call(source) == "image"
    assert circuit.state == CLOSED
    source.down = True
    fail(circuit, source, 2)  # a fresh count: two failures do not open it
    assert circuit.state == CLOSED


def test_a_failed_trial_opens_it_for_another_cool_down(clock):
    circuit, source = breaker(clock), Source()
    fail(circuit, source, 3)
    clock.now += 31
    fail(circuit, source, 1)  # the trial: one failure is enough
    assert circuit.state == OPEN
    clock.now += 29
    with pytest.raises(CircuitOpen):
        circuit.call(source)
    assert source.calls == 4


def test_only_one_trial_runs_at_a_time(clock):
    circuit, source = half_open(clock)
    seen = []

    def trial():
        # another caller arrives while the trial is in flight
        with pytest.raises(CircuitOpen):
            circuit.call(source)
        seen.append(circuit.state)
        return "ok"

    assert circuit.call(trial) == "ok"
    assert seen == [OPEN]
    assert source.calls == 3
    assert circuit.state == CLOSED


def test_an_exception_that_is_not_an_outage_passes_through_and_counts_for_nothing(clock):
    circuit, source = breaker(clock), Source()

    def bad_argument():
        raise ValueError("not a host name")

    fail(circuit, source, 2)
    for _ in range(5):
        with pytest.raises(ValueError):
            circuit.call(bad_argument)
    assert circuit.state == CLOSED
    fail(circuit, source, 1)
    assert circuit.state == OPEN


def test_a_trial_that_raises_something_else_lets_the_next_call_be_the_trial(clock):
    circuit, source = half_open(clock)
    with pytest.raises(ValueError):
        circuit.call(lambda: (_ for _ in ()).throw(ValueError("bug")))
    source.down = False
    assert circuit.call(source) == "image"
    assert circuit.state == CLOSED


def test_late_failures_of_calls_admitted_before_it_opened_do_not_extend_the_pause(clock):
    circuit, source = breaker(clock), Source()
    fail(circuit, source, 3)
    opened_until = circuit._open_until
    clock.now += 10
    circuit._failed(trial=False)  # a call admitted while closed fails after the circuit opened
    assert circuit._open_until == opened_until


@pytest.mark.parametrize("kwargs, field", [({"failures": 0}, "failures"), ({"cool_down": 0}, "cool_down")])
def test_a_bad_setting_is_refused(kwargs, field):
    with pytest.raises(ValueError, match=field):
        CircuitBreaker("x", **kwargs)
