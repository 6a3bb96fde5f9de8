"""Prepare-time filters (`sumi.data.filters`) and duplicate removal (`sumi.data.dedup`): planted exact
and near duplicates are removed, distinct documents kept, and the counts land in metadata.json."""

from __future__ import annotations

import json
import random

import pytest

from sumi.data import PackedDataset, prepare_dataset, train_tokenizer
from sumi.data.dedup import Deduplicator, shingles
from sumi.data.filters import DocumentFilter, FilterSpec

WORDS = (
    "river stone cloud ember lantern meadow signal harbor copper willow thunder glass orbit velvet canyon "
    "falcon prism quartz saddle tundra anchor beacon cobalt delta fjord glacier harvest island jungle kettle "
    "lagoon mirror nectar oasis pepper quiver raven summit timber umber valley walnut yonder zephyr"
).split()


def _distinct(n: int, words: int = 80, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(words)) for _ in range(n)]


def _near_copy(text: str, seed: int) -> str:
    """Change 2 of 80 words: word 5-gram Jaccard similarity stays around 0.8 or more."""
    rng = random.Random(seed)
    words = text.split()
    for i in rng.sample(range(len(words)), 2):
        words[i] = "zzz" + words[i]
    return " ".join(words)


def _jaccard(a: str, b: str) -> float:
    x, y = shingles(a, 5), shingles(b, 5)
    return len(x & y) / len(x | y)


def test_planted_exact_and_near_duplicates_are_removed_distinct_kept():
    docs = _distinct(60)
    exact = [docs[3], "  " + docs[7].upper() + "\n", docs[3]]  # identical up to case and whitespace
    near = [_near_copy(docs[i], i) for i in (10, 20, 30)]
    assert all(_jaccard(n, docs[i]) >= 0.75 for n, i in zip(near, (10, 20, 30)))
    assert max(_jaccard(a, b) for i, a in enumerate(docs) for b in docs[:i]) < 0.2  # the originals are distinct
    stream = docs[:40] + exact + near + docs[40:]
    d = Deduplicator(near=True, threshold=0.7, seed=0)
    verdicts = [d.is_duplicate(t) for t in stream]
    assert verdicts[:40] == [None] * 40 and verdicts[40:43] == ["exact"] * 3 and verdicts[43:46] == ["near"] * 3
    assert verdicts[46:] == [None] * 20  # every distinct document after the copies is kept
    only_exact = Deduplicator(near=False)
    assert [only_exact.is_duplicate(t) for t in stream].count("exact") == 3
    again = Deduplicator(near=True, threshold=0.7, seed=0)
    assert [again.is_duplicate(t) for t in stream] == verdicts  # seeded: the same verdicts


def test_filters_by_score_length_and_language_in_order():
    f = DocumentFilter(
        FilterSpec(
            score_field="edu",
            min_score=3.0,
            min_chars=5,
            max_chars=50,
            language_field="lang",
            languages=("ja", "en"),
            dedup="exact",
        )
    )
    cases = [
        ("good text", {"edu": 3.5, "lang": "ja"}, True),
        ("good text", {"edu": 4, "lang": "en"}, False),  # exact duplicate
        ("low score", {"edu": 2.9, "lang": "en"}, False),
        ("tiny", {"edu": 5, "lang": "en"}, False),
        ("x" * 51, {"edu": 5, "lang": "en"}, False),
        ("other lang", {"edu": 5, "lang": "de"}, False),
        ("no score", {"lang": "en"}, False),
        ("text score", {"edu": "high", "lang": "en"}, False),
    ]
    assert [f.keep(t, fields) for t, fields, _ in cases] == [k for _, _, k in cases]
    meta = f.metadata()
    assert meta["kept"] == 1 and meta["documents_seen"] == len(cases)
    assert meta["dropped"] == {"exact_duplicate": 1, "language": 1, "length": 2, "low_score": 2, "missing_field": 1}


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"score_field": "edu"}, "min_score"),
        ({"min_score": 3}, "score_field"),
        ({"dedup": "fuzzy"}, "dedup"),
        ({"min_chars": 10, "max_chars": 5}, "min_chars"),
        ({"languages": ("ja",)}, "language_field"),
    ],
)
def test_bad_filter_specs_are_one_line_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        FilterSpec(**kwargs)


def test_prepare_applies_filters_and_records_counts(tmp_path, capsys):
    docs = _distinct(30, seed=1)
    rows = [{"text": t, "edu": 1 + i % 5, "lang": "en"} for i, t in enumerate(docs)]
    rows += [
        {"text": docs[4], "edu": 5, "lang": "en"},
        {"text": _near_copy(docs[9], 1), "edu": 5, "lang": "en"},
        {"text": docs[14], "edu": 5, "lang": "fr"},
    ]
    src = tmp_path / "docs.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    tok = train_tokenizer([src], tmp_path / "tok", vocab_size=300)
    spec = FilterSpec(
        score_field="edu", min_score=3, language_field="lang", languages=("en",), dedup="near", near_threshold=0.7
    )
    meta = prepare_dataset(
        [src],
        tmp_path / "data",
        tokenizer=str(tmp_path / "tok"),
        val_fraction=0,
        num_workers=1,
        progress=False,
        filters=spec,
    )
    kept_originals = [t for i, t in enumerate(docs) if 1 + i % 5 >= 3]
    assert meta["filters"]["kept"] == len(kept_originals) == 18
    assert meta["filters"]["dropped"] == {"low_score": 12, "exact_duplicate": 1, "near_duplicate": 1, "language": 1}
    decoded = PackedDataset(tmp_path / "data").decode_documents(tok)
    assert decoded == kept_originals

    from sumi.cli import main

    assert main(["data", "stats", str(tmp_path / "data"), str(tmp_path / "data")]) == 0
    out = capsys.readouterr().out
    assert (
        out.count(
            "filters     kept 18 of 33 documents; dropped: exact_duplicate 1, language 1, low_score 12, "
            "near_duplicate 1"
        )
        == 2
    )
