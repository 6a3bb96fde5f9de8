"""NELBO perplexity of text: nats/token, bits/byte and perplexity with bootstrap confidence intervals.

Input: a text file (one document: the whole file; or `split="paragraphs"` / `"lines"`) or JSONL
(one document per line: the `field` of each object, default "text", or a JSON string).
Each document is scored as `[BOS] + doc` in canvas-sized windows (`SumiEvaluator.rolling_nelbo`);
the NELBO is an upper bound on the negative log-likelihood, so these perplexities are upper bounds.

The confidence interval is a percentile bootstrap (seeded) of the ratio `sum NELBO / sum tokens`
(and `/ sum bytes`) over *units*: documents when there are at least `min_units` of them, else the
windows. Resampling units covers both the text's variability and the Monte Carlo noise of each
unit's estimate.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..data.jsonl import iter_json_lines

LN2 = math.log(2.0)


def read_documents(path: str | os.PathLike, *, field: str = "text", split: str = "auto") -> list[str]:
    """Documents of a text or JSONL file.

    split: "auto" (JSONL for *.jsonl or when every line is JSON, else the whole file), "jsonl",
    "none" (whole file), "paragraphs" (blank-line separated) or "lines".
    """
    text = Path(path).read_text(encoding="utf-8")
    lines = [line for line in text.splitlines() if line.strip()]
    if split == "auto":
        looks_json = bool(lines) and all(line.lstrip().startswith(("{", '"')) for line in lines)
        split = "jsonl" if str(path).endswith(".jsonl") or looks_json else "none"
    if split == "jsonl":
        docs = []
        for n, obj in iter_json_lines(text.splitlines(), str(path)):
            if isinstance(obj, str):
                docs.append(obj)
            elif isinstance(obj, dict) and isinstance(obj.get(field), str):
                docs.append(obj[field])
            else:
                raise ValueError(f"{path}:{n}: expected a JSON string or an object with a string {field!r} field")
    elif split == "none":
        docs = [text]
    elif split == "paragraphs":
        docs = [p.strip("\n") for p in text.split("\n\n") if p.strip()]
    elif split == "lines":
        docs = lines
    else:
        raise ValueError(f"unknown split {split!r}; choose auto, jsonl, none, paragraphs or lines")
    docs = [d for d in docs if d.strip()]
    if not docs:
        raise ValueError(f"{path}: no text to score")
    return docs


def bootstrap_ratio(
    num: Sequence[float], den: Sequence[float], *, samples: int = 2000, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """Percentile bootstrap interval of `sum(num) / sum(den)` over the units."""
    num, den = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)
    n = len(num)
    if n < 2:
        value = float(num.sum() / den.sum())
        return value, value
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(samples, n))
    ratios = num[idx].sum(1) / np.maximum(den[idx].sum(1), 1e-12)
    alpha = (1 - level) / 2
    return float(np.quantile(ratios, alpha)), float(np.quantile(ratios, 1 - alpha))


def document_records(evaluator, docs: Sequence[str]) -> list[dict]:
    """Each document's rolling NELBO: `{nelbo, num_tokens, num_bytes, windows: [[nats, tokens, bytes], ...]}`."""
    scores = evaluator.rolling_nelbo_tokens([evaluator.encode(d) for d in docs])
    return [
        dict(
            nelbo=s.nelbo,
            num_tokens=s.num_tokens,
            num_bytes=len(d.encode("utf-8")),
            windows=[list(w) for w in s.windows],
        )
        for d, s in zip(docs, scores)
    ]


def summarize_documents(
    records: Sequence[dict], *, seconds: float, seed: int = 0, min_units: int = 10, bootstrap_samples: int = 2000
) -> dict:
    """The report of `perplexity_report` from the records of `document_records`."""
    if len(records) >= min_units:
        unit = "documents"
        nats = [r["nelbo"] for r in records]
        toks = [r["num_tokens"] for r in records]
        nbytes = [r["num_bytes"] for r in records]
    else:
        unit = "windows"
        nats = [w[0] for r in records for w in r["windows"]]
        toks = [w[1] for r in records for w in r["windows"]]
        nbytes = [w[2] for r in records for w in r["windows"]]
    total_nats = sum(r["nelbo"] for r in records)
    total_tokens, total_bytes = sum(r["num_tokens"] for r in records), sum(r["num_bytes"] for r in records)
    npt = total_nats / max(total_tokens, 1)
    bpb = total_nats / LN2 / max(total_bytes, 1)
    npt_ci = bootstrap_ratio(nats, toks, samples=bootstrap_samples, seed=seed)
    bpb_ci = tuple(x / LN2 for x in bootstrap_ratio(nats, nbytes, samples=bootstrap_samples, seed=seed))
    return dict(
        nats_per_token=npt,
        nats_per_token_ci95=list(npt_ci),
        bits_per_byte=bpb,
        bits_per_byte_ci95=list(bpb_ci),
        perplexity=math.exp(min(npt, 700.0)),
        perplexity_ci95=[math.exp(min(x, 700.0)) for x in npt_ci],
        num_documents=len(records),
        num_windows=sum(len(r["windows"]) for r in records),
        num_tokens=total_tokens,
        num_bytes=total_bytes,
        nelbo_nats=total_nats,
        ci_units=unit,
        num_units=len(nats),
        seconds=seconds,
        tokens_per_second=total_tokens / seconds if seconds > 0 else None,
    )


def perplexity_report(
    evaluator,
    docs: Sequence[str],
    *,
    seed: int = 0,
    min_units: int = 10,
    bootstrap_samples: int = 2000,
    peers=None,
    shards=None,
    resume: bool = False,
    shard_size: int | None = None,
) -> dict | None:
    """Score `docs` and summarise (see the module docstring). With `peers` (a launched run) the
    documents are split across the ranks and rank 0 gets the report (the others None); `shards`,
    `resume`, `shard_size` as in `sumi.distributed_inference.sharded_map`."""
    from ..distributed_inference import LaunchEnv, Peers, sharded_map

    start = time.perf_counter()
    done = sharded_map(
        lambda block: (document_records(evaluator, block), {}),
        docs,
        [str(i) for i in range(len(docs))],
        peers or Peers(LaunchEnv()),
        shards=shards,
        resume=resume,
        shard_size=shard_size,
    )
    if done is None:
        return None
    report = summarize_documents(
        done.records,
        seconds=time.perf_counter() - start,
        seed=seed,
        min_units=min_units,
        bootstrap_samples=bootstrap_samples,
    )
    report["resumed_items"] = done.resumed
    return report


__all__ = ["read_documents", "bootstrap_ratio", "document_records", "summarize_documents", "perplexity_report"]
