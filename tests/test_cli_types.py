"""The numeric option types: each refuses what is out of its bound with a message naming the bound."""

import argparse
import re

import pytest

from batchgen.cli_types import at_least_one, dollars, positive_dollars, positive_seconds


@pytest.mark.parametrize("parse, text, value", [
    (positive_seconds, "0.5", 0.5), (at_least_one, "1", 1), (positive_dollars, "0.01", 0.01), (dollars, "0", 0.0),
])
def test_values_in_bound_are_returned(parse, text, value):
    assert parse(text) == value


@pytest.mark.parametrize("parse, text, message", [
    (positive_seconds, "0", "must be more than 0 seconds (got 0)"),
    (at_least_one, "0", "must be at least 1 (got 0)"),
    (at_least_one, "1.5", "'1.5' is not a whole number"),
    (positive_dollars, "0", "must be more than $0 (got 0)"),
    (dollars, "-1", "must be $0 or more (got -1)"),
    (dollars, "nan", "'nan' is not a finite number"),
    (positive_seconds, "soon", "'soon' is not a number"),
])
def test_values_out_of_bound_are_refused(parse, text, message):
    with pytest.raises(argparse.ArgumentTypeError, match=re.escape(message)):
        parse(text)
