"""Numbers for people (sumi.formatting) against the definitions of the units."""

import pytest

from sumi.formatting import format_bytes, format_count


@pytest.mark.parametrize(
    "n,expected",
    [
        (0, "0"),
        (999, "999"),
        (1000, "1.00K"),
        (13_800_000, "13.80M"),
        (7_241_732_096, "7.24B"),
        (2.5e12, "2.50T"),
        (-4_500, "-4.50K"),
    ],
)
def test_counts_take_the_largest_decimal_unit_that_fits(n, expected):
    assert format_count(n) == expected


@pytest.mark.parametrize(
    "n,expected",
    [
        (0, "0 B"),
        (1023, "1023 B"),
        (1024, "1.00 KiB"),
        (28 * 2**20, "28.00 MiB"),
        (3 * 2**30 + 2**29, "3.50 GiB"),
        (5 * 2**40, "5.00 TiB"),
        (2**50, "1024.00 TiB"),
    ],
)
def test_bytes_take_the_largest_binary_unit_that_fits(n, expected):
    assert format_bytes(n) == expected
