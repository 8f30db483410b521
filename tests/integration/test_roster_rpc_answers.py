"""roster.rpc on a real broker: an answer the bus cannot carry never kills the service sending it."""
import pytest

from roster import serialization
from roster.errors import AnswerTooLarge, RosterError
from roster.rpc import rpc
from tests.integration.support import running

LIMIT = 10_000  # stands for serialization.MAX_MESSAGE_BYTES (32 MiB), so the test stays cheap


CALLS: list = []  # what the service ran, in order


class Answerer:
    name = "roster_test_answerer"

    @rpc
    def text(self, size):
        CALLS.append(("text", size))
        return "x" * size

    @rpc
    def odd(self):
        CALLS.append(("odd",))
        return {"tags": {1, 2}}  # a set: JSON cannot express it


def test_an_answer_too_large_is_an_error_to_the_caller_and_the_service_answers_on(amqp_uri, monkeypatch):
    monkeypatch.setattr(serialization, "MAX_MESSAGE_BYTES", LIMIT)
    CALLS.clear()
    with running(amqp_uri, Answerer) as proxy:
        with pytest.raises(AnswerTooLarge) as failure:
            proxy.roster_test_answerer.text(LIMIT + 1)
        assert "the answer would be larger than 10000 bytes" in str(failure.value)
        assert "per_page" in str(failure.value) and failure.value.status == 500

        with pytest.raises(RosterError) as failure:
            proxy.roster_test_answerer.odd()
        assert "could not be encoded" in str(failure.value)

        assert proxy.roster_test_answerer.text(10) == "x" * 10  # the same container, still running
        assert proxy.roster_test_answerer.text(LIMIT - 100) == "x" * (LIMIT - 100)
    # each request was acked once answered: none was redelivered and run again
    assert CALLS == [("text", LIMIT + 1), ("odd",), ("text", 10), ("text", LIMIT - 100)]


def test_the_message_names_the_limit_in_mib():
    from kombu.exceptions import EncodeError

    from roster.errors import PayloadTooLarge
    from roster.rpc import unsendable_answer

    refusal = unsendable_answer(EncodeError(PayloadTooLarge("the answer is larger than 33554432 bytes")))
    assert isinstance(refusal, AnswerTooLarge)
    assert str(refusal) == "the answer would be larger than 32 MiB: ask for fewer entries (per_page)"
