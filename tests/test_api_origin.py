"""A state belongs to one API: a rehearsal's state is never resumed against the real API, and back."""

from __future__ import annotations

import pytest

from batchgen.api_origin import check_same_api, identity, is_rehearsal
from batchgen.errors import UsageError

REAL = "https://api.wavespeed.ai"


def runs(base_url: str, provider: str = "wavespeed") -> list[dict]:
    return [{"phase": "start", **identity(provider, base_url)}, {"phase": "end"}]


@pytest.mark.parametrize("url", ["http://127.0.0.1:8000", "http://localhost:9", "http://[::1]:80", "http://127.3.2.1"])
def test_loopback_urls_are_rehearsals(url):
    assert is_rehearsal(url)


@pytest.mark.parametrize("url", [REAL, "https://10.0.0.2", "https://localhost.example.com"])
def test_other_urls_are_real(url):
    assert not is_rehearsal(url)


def test_old_states_without_a_record_load_as_before():
    check_same_api([{"phase": "start", "jobs": 3}], "wavespeed", REAL, "s.jsonl")


def test_rehearsals_resume_each_other_and_a_real_api_resumes_itself():
    check_same_api(runs("http://127.0.0.1:4000"), "wavespeed", "http://127.0.0.1:5000", "s.jsonl")
    check_same_api(runs(REAL), "wavespeed", REAL, "s.jsonl")


def test_a_rehearsal_state_is_refused_against_the_real_api_with_why_and_what_to_do():
    with pytest.raises(UsageError) as caught:
        check_same_api(runs("http://127.0.0.1:4000"), "wavespeed", REAL, "out/state.jsonl")
    message = str(caught.value)
    assert "out/state.jsonl" in message and "rehearsal" in message and "never paid" in message
    assert "loopback" in message and "--out" in message and "--allow-other-api" in message


def test_a_real_state_is_refused_in_a_rehearsal_and_against_another_real_url():
    with pytest.raises(UsageError, match="does not know its paid predictions"):
        check_same_api(runs(REAL), "wavespeed", "http://127.0.0.1:4000", "s.jsonl")
    with pytest.raises(UsageError, match="live there"):
        check_same_api(runs(REAL), "wavespeed", "https://eu.example.com", "s.jsonl")
    with pytest.raises(UsageError):
        check_same_api(runs(REAL, "replicate"), "wavespeed", REAL, "s.jsonl")
