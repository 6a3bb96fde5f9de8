"""JSON Lines reading shared by data preparation and evaluation."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any


def iter_json_lines(lines: Iterable[str], where: str) -> Iterator[tuple[int, Any]]:
    """`(line number, parsed value)` for each non-blank line; a line that is not valid JSON raises
    ValueError naming `where` (the file) and the line."""
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            yield n, json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{where}:{n}: not valid JSON ({e.msg})") from None
        except UnicodeDecodeError:
            raise ValueError(f"{where}:{n}: not UTF-8 text (is it a binary file?)") from None
