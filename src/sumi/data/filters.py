"""Keep or drop documents at prepare time: by a score field (e.g. an educational-value score computed
elsewhere, FineWeb-Edu style), by length, by a language field, and duplicates (`sumi.data.dedup`).

Tests run in that order and a document is counted under the first one it fails; the counts go to
the dataset's metadata (``metadata["filters"]``). Field tests need records with fields (JSONL,
parquet, `datasets`); a document without the field is dropped (counted as ``missing_field``).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from .dedup import Deduplicator

DEDUP_MODES = ("none", "exact", "near")


@dataclass(frozen=True)
class FilterSpec:
    """What to keep. `score_field` >= `min_score`; `min_chars` <= len(text) <= `max_chars`;
    `language_field` in `languages`; `dedup`: "none", "exact" or "near" (exact and near)."""

    score_field: str | None = None
    min_score: float | None = None
    min_chars: int = 0
    max_chars: int | None = None
    language_field: str | None = None
    languages: tuple[str, ...] = field(default_factory=tuple)
    dedup: str = "none"
    near_threshold: float = 0.8
    num_perm: int = 128
    shingle: int = 5
    seed: int = 0

    def __post_init__(self) -> None:
        if (self.score_field is None) != (self.min_score is None):
            raise ValueError("a score filter needs both score_field (--score-field) and min_score (--min-score)")
        if self.min_score is not None and not math.isfinite(self.min_score):
            raise ValueError(f"min_score must be a finite number, got {self.min_score}")
        if self.min_chars < 0 or (self.max_chars is not None and self.max_chars < max(1, self.min_chars)):
            raise ValueError(f"need 0 <= min_chars <= max_chars, got {self.min_chars}, {self.max_chars}")
        if bool(self.language_field) != bool(self.languages):
            raise ValueError(
                "a language filter needs both language_field (--language-field) and languages (--languages)"
            )
        if self.dedup not in DEDUP_MODES:
            raise ValueError(f"dedup must be one of {', '.join(DEDUP_MODES)}, got {self.dedup!r}")

    @property
    def fields(self) -> tuple[str, ...]:
        """Record fields the filter reads."""
        return tuple(f for f in (self.score_field, self.language_field) if f)

    @property
    def active(self) -> bool:
        return bool(self.fields or self.min_chars or self.max_chars is not None or self.dedup != "none")


class DocumentFilter:
    """`keep(text, fields)` for each document in order; `metadata()` for metadata.json."""

    def __init__(self, spec: FilterSpec):
        self.spec = spec
        self.counts: Counter[str] = Counter()
        self.dedup = (
            None
            if spec.dedup == "none"
            else Deduplicator(
                spec.dedup == "near",
                threshold=spec.near_threshold,
                num_perm=spec.num_perm,
                shingle=spec.shingle,
                seed=spec.seed,
            )
        )

    def keep(self, text: str, fields: dict[str, Any]) -> bool:
        reason = self._reason(text, fields)
        self.counts[reason or "kept"] += 1
        return reason is None

    def _reason(self, text: str, fields: dict[str, Any]) -> str | None:
        s = self.spec
        if any(fields.get(f) is None for f in s.fields):
            return "missing_field"
        if s.score_field is not None:
            score = fields[s.score_field]
            if isinstance(score, bool) or not isinstance(score, (int, float)) or not score >= s.min_score:
                return "low_score"
        if len(text) < s.min_chars or (s.max_chars is not None and len(text) > s.max_chars):
            return "length"
        if s.language_field is not None and str(fields[s.language_field]) not in s.languages:
            return "language"
        if self.dedup is not None:
            dup = self.dedup.is_duplicate(text)
            if dup:
                return f"{dup}_duplicate"
        return None

    def metadata(self) -> dict[str, Any]:
        spec = asdict(self.spec)
        spec["languages"] = list(self.spec.languages)
        seen = sum(self.counts.values())
        return {
            "spec": spec,
            "documents_seen": seen,
            "kept": self.counts["kept"],
            "dropped": {k: v for k, v in sorted(self.counts.items()) if k != "kept"},
        }


def add_filter_args(p) -> None:
    """The ``data prepare`` options that build a `FilterSpec`."""
    g = p.add_argument_group("filters (applied in this order; counts go to metadata.json)")
    g.add_argument("--score-field", default=None, help="record field with a quality score (e.g. edu_score)")
    g.add_argument("--min-score", type=float, default=None, help="keep documents whose score is >= this")
    g.add_argument("--min-chars", type=int, default=0, help="drop documents shorter than this many characters")
    g.add_argument("--max-chars", type=int, default=None, help="drop documents longer than this many characters")
    g.add_argument("--language-field", default=None, help="record field with the document's language")
    g.add_argument("--languages", default=None, help="comma-separated languages to keep (e.g. ja,en)")
    g.add_argument(
        "--dedup",
        choices=DEDUP_MODES,
        default="none",
        help="drop exact duplicates, or exact and near duplicates (MinHash + LSH)",
    )
    g.add_argument(
        "--near-threshold",
        type=float,
        default=0.8,
        help="estimated Jaccard similarity of word 5-grams at which a document is a near duplicate (default 0.8)",
    )


def spec_from_args(args) -> FilterSpec | None:
    """The `FilterSpec` of parsed ``data prepare`` options (None when no filter is asked for)."""
    langs = tuple(x.strip() for x in args.languages.split(",") if x.strip()) if args.languages else ()
    spec = FilterSpec(
        score_field=args.score_field,
        min_score=args.min_score,
        min_chars=args.min_chars,
        max_chars=args.max_chars,
        language_field=args.language_field,
        languages=langs,
        dedup=args.dedup,
        near_threshold=args.near_threshold,
        seed=args.seed,
    )
    return spec if spec.active else None


__all__ = ["FilterSpec", "DocumentFilter", "add_filter_args", "spec_from_args", "DEDUP_MODES"]
