"""Data mixtures (`sumi.training.mixture`): which source each row comes from, exact per-source counts,
the realised mixture, the rank/resume contract, exhaustion (new pass or stop) and bad mixtures."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from sumi.training import ConfigError, TrainConfig, train
from sumi.training.mixture import GOLDEN, MixtureSchedule, MixtureSource, floor_sum
from sumi.training.phases import build_plan

S = 8


class Labelled:
    """A finite source whose window i of source `label` reads ``label * 10**7 + i`` everywhere: the rows
    say where they came from."""

    def __init__(self, label: int, windows: int):
        self.label, self.windows = label, windows

    def num_windows(self, seq_len: int) -> int:
        return self.windows

    def get_window(self, index: int, seq_len: int) -> torch.Tensor:
        assert 0 <= index < self.windows
        return torch.full((seq_len,), self.label * 10**7 + index, dtype=torch.long)


def _config(weights: dict[str, float], *, phases: list | None = None, G: int = 16, on_exhausted: str = "epoch"):
    data = {
        "sources": [{"name": n, "kind": "synthetic"} for n in weights],
        "mixture": weights,
        "seq_len": S,
        "on_exhausted": on_exhausted,
    }
    cfg = {
        "model": {"preset": "sumi-tiny"},
        "data": data,
        "batch": {"global_batch_size": G, "micro_batch_size": G},
        "steps": 50,
        "seed": 5,
    }
    if phases:
        del cfg["steps"]
        cfg["phases"] = phases
    c = TrainConfig.from_dict(cfg)
    c.validate()
    return c


def _mixture(config: TrainConfig, sizes: list[int]) -> MixtureSource:
    plan = build_plan(config)
    sources = [Labelled(i, n) for i, n in enumerate(sizes)]
    return MixtureSource(
        sources,
        plan,
        global_batch_size=config.batch.global_batch_size,
        seq_len=S,
        seed=config.seed,
        on_exhausted=config.data.on_exhausted,
    )


def _labels(batch: torch.Tensor) -> list[tuple[int, int]]:
    """(source, window) of each row."""
    return [divmod(int(v), 10**7) for v in batch[:, 0]]


def _all_rows(mix: MixtureSource, steps: int) -> list[tuple[int, int]]:
    it = mix.batches(S, mix.G, seed=mix.seed)
    return [x for _ in range(steps) for x in _labels(next(it))]


# ----------------------------------------------------------------------------- the arithmetic
def test_floor_sum_matches_the_sum():
    rng = random.Random(0)
    for _ in range(300):
        n, m, a, b = rng.randint(1, 60), rng.randint(1, 40), rng.randint(0, 90), rng.randint(0, 90)
        assert floor_sum(n, m, a, b) == sum((a * j + b) // m for j in range(n))
    n, m, a, b = 10**6, 1 << 64, GOLDEN, 12345  # big integers: spot-check against a chunked numpy-free sum
    assert floor_sum(n, m, a, b) == sum((a * j + b) // m for j in range(n))


def test_sources_and_counts_follow_the_weyl_definition():
    """Source of row j = the weight interval holding (A*j + B) mod 2**64, written out with Python ints."""
    weights, offset = [0.325, 0.297, 0.21, 0.168], 987654321
    sched = MixtureSchedule(weights, offset)
    cum = np.cumsum(weights) / sum(weights)
    edges = [int(round(c * 2**64)) for c in cum[:-1]]
    expected = [sum(((GOLDEN * j + offset) % 2**64) >= e for e in edges) for j in range(3000)]
    assert sched.sources(0, 3000).tolist() == expected
    assert sched.sources(1234, 100).tolist() == expected[1234:1334]
    for n in (0, 1, 17, 999, 3000):
        assert sched.counts_before(n) == np.bincount(expected[:n], minlength=4).tolist()


def test_zero_weight_sources_are_never_drawn():
    for weights in ([0.5, 0.0, 0.5], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]):
        sched = MixtureSchedule(weights, 3)
        drawn = np.bincount(sched.sources(0, 500), minlength=3)
        assert [bool(x) for x in drawn] == [w > 0 for w in weights]
        assert sched.counts_before(500) == drawn.tolist()


# ----------------------------------------------------------------------------- the realised mixture
def test_realised_mixture_is_within_one_percent_of_the_weights():
    weights = {"code": 0.325, "math": 0.297, "general": 0.21, "reasoning": 0.168}
    config = _config(weights, G=16)
    mix = _mixture(config, [10**6] * 4)
    for steps in (8, 50):  # 128 and 800 rows
        rows = _all_rows(mix, steps)
        share = np.bincount([s for s, _ in rows], minlength=4) / len(rows)
        assert np.abs(share - np.array(list(weights.values()))).max() <= 0.01, (steps, share)
        assert mix.tokens_before(steps) == {
            n: int(c) * S for n, c in zip(weights, np.bincount([s for s, _ in rows], minlength=4))
        }


def test_ranks_and_resume_see_the_same_rows():
    config = _config({"a": 0.6, "b": 0.4}, G=8)
    mix = _mixture(config, [50, 30])
    whole = [next(mix.batches(S, 8, seed=5, start_step=k)) for k in range(6)]
    # 2 ranks x micro-batch 2 x 2 accumulation steps: data batch k = step k // 2, rows (k % 2) * 4 + r * 2 ..
    for step in range(6):
        parts = []
        for m in range(2):
            for r in range(2):
                parts.append(next(mix.batches(S, 2, seed=5, rank=r, world_size=2, start_step=step * 2 + m)))
        assert torch.equal(torch.cat(parts), whole[step])
    it = mix.batches(S, 8, seed=5, start_step=3)  # resumed at step 3
    assert all(torch.equal(next(it), whole[k]) for k in range(3, 6))


# ----------------------------------------------------------------------------- running out
def test_each_pass_draws_every_window_once_then_reshuffles():
    config = _config({"a": 0.5, "b": 0.5}, G=8)
    mix = _mixture(config, [20, 1000])
    rows = _all_rows(mix, 10)  # ~40 rows of "a": two passes over its 20 windows
    a = [w for s, w in rows if s == 0]
    assert len(a) >= 40
    assert sorted(a[:20]) == list(range(20)) and sorted(a[20:40]) == list(range(20))
    assert a[:20] != a[20:40]  # a new permutation each pass
    assert mix.epochs_before(10)["a"] == -(-len(a) // 20)


def test_stop_policy_ends_before_a_window_is_reused():
    config = _config({"a": 0.5, "b": 0.5}, G=8, on_exhausted="stop")
    mix = _mixture(config, [30, 1000])
    stop = mix.stop_step()
    rows = _all_rows(mix, stop)
    a = [w for s, w in rows if s == 0]
    assert len(a) == len(set(a)) <= 30  # no reuse up to the stop step
    assert mix.rows_before(stop + 1)[0] > 30  # and the next step would reuse
    with pytest.raises(RuntimeError, match="exhausted"):
        _all_rows(mix, stop + 1)
    assert _mixture(_config({"a": 0.5, "b": 0.5}, G=8), [30, 1000]).stop_step() is None  # "epoch" never stops


# ----------------------------------------------------------------------------- bad mixtures
@pytest.mark.parametrize(
    "change, message",
    [
        ({"mixture": {"a": 0.5, "b": 0.4}}, r"sum to 0\.9, not 1"),
        ({"mixture": {"a": 0.5, "c": 0.5}}, r"unknown source 'c'.*\['a', 'b'\]"),
        ({"mixture": {"a": 1.5, "b": -0.5}}, r"'data\.mixture\.b'.*>= 0"),
        ({"mixture": {}}, r"no mixture"),
        ({"on_exhausted": "wrap"}, r"'epoch' or 'stop'"),
    ],
)
def test_bad_mixtures_fail_with_the_key(change, message):
    data = {
        "sources": [{"name": "a", "kind": "synthetic"}, {"name": "b", "kind": "synthetic"}],
        "mixture": {"a": 0.5, "b": 0.5},
        **change,
    }
    with pytest.raises(ConfigError, match=message):
        TrainConfig.from_dict({"model": {"preset": "sumi-tiny"}, "data": data}).validate()


def test_an_empty_or_missing_source_fails_before_any_work(tmp_path, capsys):
    from sumi.data import prepare_dataset, train_tokenizer
    from sumi.training.cli import main

    (tmp_path / "tiny.txt").write_text("a b")
    tok = train_tokenizer([tmp_path / "tiny.txt"], tmp_path / "tok", vocab_size=260)
    prepare_dataset(
        [tmp_path / "tiny.txt"],
        tmp_path / "small",
        tokenizer=str(tmp_path / "tok"),
        val_fraction=0,
        num_workers=1,
        progress=False,
    )
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"""\
model: {{preset: sumi-tiny, overrides: {{vocab_size: {len(tok)}}}}}
data:
  seq_len: 32
  sources: [{{name: big, kind: synthetic}}, {{name: small, path: {tmp_path / "small"}}}]
  mixture: {{big: 0.5, small: 0.5}}
batch: {{global_batch_size: 4, micro_batch_size: 4}}
steps: 2
device: cpu
log: {{progress: false}}
""")
    out = tmp_path / "never"
    with pytest.raises(ConfigError, match=r"source 'small'.*empty.*seq_len=32"):
        train(recipe, [f"out_dir={out}"])
    assert not out.exists()
    assert main([str(recipe), f"out_dir={out}", f"data.sources.1.path={tmp_path / 'missing'}"]) == 2
    err = capsys.readouterr().err
    assert "source 'small'" in err and "missing" in err and "Traceback" not in err and not out.exists()
