"""batchgen.redact: the key and its Bearer form masked in any text, without mangling words."""

from __future__ import annotations

from urllib.parse import quote

from batchgen.redact import MASK, Redactor, redact

KEY = "sk-live-SECRET+4f9a/0c1d2e3b"


def test_a_key_and_its_bearer_form_are_masked_wherever_they_appear():
    text = f'Authorization: Bearer {KEY}\n{{"token": "{KEY}"}} and again {KEY}.'
    masked = redact(text, KEY)
    assert KEY not in masked and masked.count(MASK) == 3
    assert masked.startswith("Authorization: Bearer ***\n")


def test_a_key_glued_to_other_characters_takes_its_whole_token_with_it():
    assert redact(f"x{KEY}yz, next", KEY) == "***, next"
    assert redact(f"q={quote(KEY, safe='')}&a=1", KEY) == "q=***&a=1"


def test_a_short_key_masks_nothing():
    # Issue 14 item 13: key "k" turned "mug-4s-720p-task" into garbage.
    assert redact("mug-4s-720p-task failed", "k") == "mug-4s-720p-task failed"
    assert redact("a 7-char secret1 stays", "secret1") == "a 7-char secret1 stays"
    assert redact("nothing", "") == "nothing" and redact("nothing", None) == "nothing"


def test_only_whole_keys_are_masked_never_fragments():
    mask = Redactor(KEY)
    assert mask("sk-live-SECRET is a prefix, not the key") == "sk-live-SECRET is a prefix, not the key"
    assert mask(f"{KEY}{KEY}") == MASK


def test_a_long_text_is_masked_in_linear_time():
    text = "a" * 2_000_000 + KEY + "b" * 2_000_000
    assert redact(text, KEY) == MASK


def test_a_key_repeated_a_hundred_thousand_times_is_masked_quickly():
    glued = KEY.replace("+", "-").replace("/", "_")  # a key of token characters only
    assert redact(glued * 100_000, glued) == MASK
