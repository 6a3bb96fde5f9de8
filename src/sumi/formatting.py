"""Numbers for people: counts with a K/M/B/T suffix, byte sizes in binary units."""

from __future__ import annotations


def format_count(n: float) -> str:
    """`1234567` -> "1.23M" (K, M, B, T = 1e3 .. 1e12, two decimals); below 1000 the whole number."""
    for div, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K")):
        if abs(n) >= div:
            return f"{n / div:.2f}{suffix}"
    return f"{n:.0f}"


def format_bytes(n: float) -> str:
    """`3 * 2**20` -> "3.00 MiB" (B, KiB .. TiB, two decimals; whole bytes below 1 KiB)."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1024
    return f"{n:.2f} TiB"


__all__ = ["format_count", "format_bytes"]
