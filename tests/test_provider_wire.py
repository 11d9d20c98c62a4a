"""batchgen.providers.wire: every hostile answer shape parsed without a socket, and never a raw
TypeError, ValueError or OverflowError out of it."""

from __future__ import annotations

import pytest

from batchgen.errors import AmbiguousSubmitError, PermanentError, TransientError
from batchgen.providers.base import PredictionStatus
from batchgen.providers.wire import (
    RETRY_AFTER_CAP,
    BadAnswer,
    UnknownStatus,
    answer_payload,
    data_id,
    parse_prediction,
    parse_retry_after,
)

PID = "abc123"


def envelope(**data):
    return {"code": 200, "message": "success", "data": {"id": PID, **data}}


@pytest.mark.parametrize("raw", ["../../api/v3/balance", "a/b", "x?y=1", "", " ", "a" * 300, True, 1.5, ["a"]])
def test_an_id_that_could_leave_its_url_path_is_not_an_id(raw):
    assert data_id({"data": {"id": raw}}) is None


def test_a_numeric_id_is_read_as_text():
    assert data_id({"data": {"id": 42}}) == "42"


@pytest.mark.parametrize("data", [{"outputs": 5}, {"outputs": [1, 2]}, {"outputs": {"a": 1}}, {"status": ["x"]},
                                  {"model": {"nested": [[[]]]}}, {"error": [1]}, {"created_at": {"t": 1}}])
def test_junk_in_a_field_is_a_bad_answer_that_still_names_its_task(data):
    with pytest.raises(BadAnswer) as info:
        parse_prediction(envelope(**data), strict_status=True)
    assert info.value.prediction_id == PID


@pytest.mark.parametrize("inference", [float("inf"), float("nan"), -5, "12", 1e300, True])
def test_an_absurd_inference_time_is_dropped(inference):
    pred = parse_prediction(envelope(status="processing", timings={"inference": inference}), strict_status=True)
    assert pred.inference_ms is None and pred.status is PredictionStatus.PROCESSING


def test_an_unknown_status_is_strict_on_reads_and_lenient_on_submits():
    with pytest.raises(UnknownStatus):
        parse_prediction(envelope(status="succeeded"), strict_status=True)
    assert parse_prediction(envelope(status="succeeded"), strict_status=False).status is PredictionStatus.PROCESSING


def test_an_error_object_gives_its_message():
    pred = parse_prediction(envelope(status="failed", error={"message": "content flagged"}), strict_status=True)
    assert pred.status is PredictionStatus.FAILED and pred.error == "content flagged"


@pytest.mark.parametrize("headers,expected", [
    ({"Retry-After": "Infinity"}, RETRY_AFTER_CAP), ({"Retry-After": "1e999"}, RETRY_AFTER_CAP),
    ({"Retry-After": "NaN"}, None), ({"Retry-After": "-1"}, 0.0), ({"Retry-After": "garbage"}, None),
    ({"retry-after-ms": "inf"}, RETRY_AFTER_CAP), ({"retry-after-ms": "1500"}, 1.5), ({}, None),
])
def test_retry_after_is_bounded(headers, expected):
    assert parse_retry_after(headers) == expected


def test_a_retry_after_date_a_day_ahead_is_clamped():
    assert parse_retry_after({"Retry-After": "Sat, 01 Jan 2000 00:00:00 GMT"}, now=946_684_800 - 86_400) == RETRY_AFTER_CAP


def _answer(status, body, submit):
    return answer_payload(status, {}, body, kind="submit" if submit else "result", submit=submit,
                          key_variable="KEY")


@pytest.mark.parametrize("body", [b"[" * 200_000, b"\xff\xfe", b"<html>", None])
def test_an_unreadable_success_is_a_bad_answer(body):
    with pytest.raises(BadAnswer):
        _answer(200, body, submit=True)


def test_error_classes_for_submit_and_read():
    with pytest.raises(AmbiguousSubmitError):
        _answer(502, b"", submit=True)
    with pytest.raises(TransientError):
        _answer(502, b"", submit=False)
    with pytest.raises(PermanentError):
        _answer(200, b'{"code": 400, "message": "bad duration"}', submit=True)
    with pytest.raises(AmbiguousSubmitError) as info:
        _answer(400, b'{"code": 400, "data": {"id": "abc123"}}', submit=True)
    assert info.value.prediction_id == PID
