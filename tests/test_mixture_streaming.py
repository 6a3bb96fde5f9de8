"""Streamed mixture sources (`sumi.data.StreamedDataset`, kind "stream"): windows equal to the tokenized
documents cut into seq_len, a realised mixture with a prepared source, rows from (seed, step) across
ranks and resumes (with and without the checkpointed stream position), passes and the stop policy,
the trainer end to end, bad sources, and (slow) 1 vs 2 processes."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import torchrun_args
from test_training import _close, _losses, _run
from tokenizers import Tokenizer

import sumi
from sumi.data import PackedDataset, StreamedDataset, prepare_dataset, stats
from sumi.training import ConfigError, TrainConfig, read_jsonl, train
from sumi.training.mixture import open_mixture
from sumi.training.phases import build_plan

DEMO = Path(sumi.__file__).parent / "assets" / "models" / "demo"
V = 8192  # the demo tokenizer's vocabulary
S = 16


def _texts(n: int, seed: int, alphabet: str) -> list[str]:
    """`n` documents of random words over `alphabet` (some empty)."""
    rng = random.Random(seed)
    return [
        " ".join("".join(rng.choice(alphabet) for _ in range(rng.randint(1, 7))) for _ in range(rng.randint(0, 12)))
        for _ in range(n)
    ]


def _jsonl(path: Path, texts: list, field: str = "text") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps({field: t, "id": i}) + "\n" for i, t in enumerate(texts)), encoding="utf-8")
    return path


def _reference_stream(texts: list) -> list[int]:
    """The definition, written out: each document with any tokens is BOS, its ids (special-token strings
    as plain text, nothing added), EOS; the documents concatenated in order."""
    tok = Tokenizer.from_file(str(DEMO / "tokenizer.json"))
    tok.encode_special_tokens = True
    roles = json.loads((DEMO / "tokenizer_config.json").read_text())
    bos, eos = tok.token_to_id(roles["bos_token"]), tok.token_to_id(roles["eos_token"])
    out: list[int] = []
    for text in texts:
        ids = tok.encode(text, add_special_tokens=False).ids if text is not None else []
        if ids:
            out += [bos, *ids, eos]
    return out


def _windows(stream: list[int]) -> list[list[int]]:
    return [stream[i * S : (i + 1) * S] for i in range(len(stream) // S)]


def _config(tmp_path: Path, sources: list[dict], mixture: dict, **top) -> TrainConfig:
    cfg = {
        "model": {"preset": "sumi-tiny", "overrides": {"vocab_size": V}},
        "data": {"seq_len": S, "sources": sources, "mixture": mixture},
        "batch": {"global_batch_size": 8, "micro_batch_size": 8},
        "steps": 12,
        "seed": 7,
        "device": "cpu",
        "num_threads": 1,
        "out_dir": str(tmp_path / "run"),
        "log": {"progress": False},
    }
    for key, value in top.items():
        section, _, sub = key.partition("__")
        if sub:
            cfg.setdefault(section, {})[sub] = value
        else:
            cfg[key] = value
    c = TrainConfig.from_dict(cfg)
    c.validate()
    return c


def _web(path: Path, **more) -> dict:
    return {"name": "web", "kind": "stream", "path": str(path), "tokenizer": str(DEMO), **more}


# ----------------------------------------------------------------------------- windows
def test_windows_are_the_tokenized_documents_cut_into_seq_len(tmp_path):
    texts = _texts(50, 0, "abcdefgh") + ["a literal <|endoftext|> stays text", "", None, "last one"]
    path = _jsonl(tmp_path / "web.jsonl", texts)
    expected = _windows(_reference_stream(texts))
    ds = StreamedDataset(path, tokenizer=str(DEMO))
    assert ds.num_windows(S) is None  # unknown until read
    assert [ds.get_window(w, S).tolist() for w in range(len(expected))] == expected
    assert not ds.has_window(len(expected), S) and ds.num_windows(S) == len(expected)
    with pytest.raises(IndexError, match="out of range"):
        ds.get_window(len(expected), S)
    assert ds.row(len(expected) + 2, S).tolist() == expected[2]  # the next pass, in stream order
    assert ds.get_window(1, S).tolist() == expected[1]  # behind the reader: read again from the start
    # the same documents prepared (val_fraction=0) give the same windows
    prepare_dataset([path], tmp_path / "packed", tokenizer=str(DEMO), val_fraction=0, num_workers=1, progress=False)
    packed = PackedDataset(tmp_path / "packed")
    assert [packed.get_window(w, S).tolist() for w in range(packed.num_windows(S))] == expected


def test_text_and_parquet_files_read_as_prepare_reads_them(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    docs = ["first file\nwith two lines\n", "second file"]
    for i, d in enumerate(docs):
        (tmp_path / "txt" / f"{i}.txt").parent.mkdir(exist_ok=True)
        (tmp_path / "txt" / f"{i}.txt").write_text(d)
    ds = StreamedDataset(tmp_path / "txt", tokenizer=str(DEMO))  # a folder of text files: one document each
    stream = _reference_stream(docs)
    assert torch.cat([ds.get_window(w, 4) for w in range(len(stream) // 4)]).tolist() == stream[: len(stream) // 4 * 4]
    texts = _texts(20, 1, "xyz")
    pq.write_table(pa.table({"body": texts}), tmp_path / "d.parquet")
    ds = StreamedDataset(tmp_path / "d.parquet", tokenizer=str(DEMO), text_field="body")
    expected = _windows(_reference_stream(texts))
    assert [ds.get_window(w, S).tolist() for w in range(len(expected))] == expected


# ----------------------------------------------------------------------------- the mixture
def _two_sources(tmp_path: Path, web_docs: int = 400, book_docs: int = 400) -> tuple[dict, dict, set, set]:
    web = _texts(web_docs, 2, "abcd")
    book = _texts(book_docs, 3, "wxyz")
    _jsonl(tmp_path / "web.jsonl", web)
    _jsonl(tmp_path / "book.jsonl", book)
    prepare_dataset(
        [tmp_path / "book.jsonl"], tmp_path / "book", tokenizer=str(DEMO), val_fraction=0, num_workers=1, progress=False
    )
    web_windows = {tuple(w) for w in _windows(_reference_stream(web))}
    book_windows = {tuple(w) for w in _windows(_reference_stream(book))}
    assert not web_windows & book_windows
    return _web(tmp_path / "web.jsonl"), {"name": "book", "path": str(tmp_path / "book")}, web_windows, book_windows


def test_realised_mixture_of_a_streamed_and_a_packed_source_is_within_one_percent(tmp_path):
    web, book, web_windows, book_windows = _two_sources(tmp_path)
    config = _config(tmp_path, [web, book], {"web": 0.3, "book": 0.7}, steps=50, batch__global_batch_size=16)
    config.batch.micro_batch_size = 16
    mix = open_mixture(config, build_plan(config), V)
    it = mix.batches(S, 16, seed=config.seed)
    rows = [tuple(r) for _ in range(50) for r in next(it).tolist()]  # 800 rows
    is_web = [r in web_windows for r in rows]
    assert all(w or r in book_windows for w, r in zip(is_web, rows))
    assert abs(sum(is_web) / len(rows) - 0.3) <= 0.01
    assert mix.tokens_before(50) == {"web": sum(is_web) * S, "book": (len(rows) - sum(is_web)) * S}


def test_ranks_and_resumes_see_the_same_rows_across_passes(tmp_path):
    web = _web(_jsonl(tmp_path / "web.jsonl", _texts(15, 4, "abc")))  # ~17 windows: several passes in 12 steps
    config = _config(tmp_path, [web, {"name": "gen", "kind": "synthetic"}], {"web": 0.6, "gen": 0.4})
    plan = build_plan(config)
    mix = open_mixture(config, plan, V)
    it = mix.batches(S, 8, seed=config.seed)
    whole = [next(it) for _ in range(12)]
    n = mix.sources[0].num_windows(S)
    assert mix.rows_before(12)[0] > 2 * n  # the run wrapped twice
    for step in (0, 5, 11):  # 2 ranks x micro-batch 2 x 2 accumulation steps, each rank its own mixture
        parts = []
        for m in range(2):
            for r in range(2):
                ranked = open_mixture(config, plan, V)
                parts.append(
                    next(ranked.batches(S, 2, seed=config.seed, rank=r, world_size=2, start_step=step * 2 + m))
                )
        assert torch.equal(torch.cat(parts), whole[step])
    for start in (3, 7):  # resumed: from the start of the stream, and from the checkpointed position
        plain = open_mixture(config, plan, V)
        assert all(
            torch.equal(b, w) for b, w in zip(plain.batches(S, 8, seed=config.seed, start_step=start), whole[start:])
        )
        positions = mix.stream_positions(start)
        assert positions["web"]["num_tokens"] == mix.sources[0].num_tokens  # the length travels too
        restored = open_mixture(config, plan, V)
        restored.restore_streams(positions)
        batches = restored.batches(S, 8, seed=config.seed, start_step=start)
        assert all(torch.equal(b, w) for b, w in zip(batches, whole[start:]))
        assert restored.epochs_before(12) == mix.epochs_before(12)


def test_a_checkpointed_position_skips_the_tokenization_before_it(tmp_path, monkeypatch, caplog):
    import sumi.data.prepare as prepare

    monkeypatch.setattr(prepare, "_BATCH_DOCS", 8)  # read ahead 8 documents at a time
    texts = _texts(300, 5, "abcdef")
    web = _web(_jsonl(tmp_path / "web.jsonl", texts))
    config = _config(tmp_path, [web], {"web": 1.0})
    plan = build_plan(config)
    mix = open_mixture(config, plan, V)
    it = mix.batches(S, 8, seed=config.seed)
    whole = [next(it) for _ in range(12)]
    position = mix.stream_positions(10)["web"]
    assert position["window"] == 80 and position["document"] > 50

    def tokenized_from(step: int, positions: dict | None) -> int:
        m = open_mixture(config, plan, V)
        if positions is not None:
            m.restore_streams(positions)
        before = m.sources[0].documents_tokenized
        got = list(zip(m.batches(S, 8, seed=config.seed, start_step=step), range(2)))
        assert all(torch.equal(b, whole[step + i]) for b, i in got)
        return m.sources[0].documents_tokenized - before

    skipped, plain = tokenized_from(10, {"web": position}), tokenized_from(10, None)
    assert plain - skipped >= position["document"] - 8
    changed = {"web": {**position, "sha": "0" * 16}}  # the data no longer matches: read from the start
    assert tokenized_from(10, changed) >= plain and "not what the checkpoint recorded" in caplog.text


# ----------------------------------------------------------------------------- running out
def test_a_stream_that_runs_out_starts_a_new_pass_or_stops(tmp_path):
    texts = _texts(12, 6, "ab")
    web = _web(_jsonl(tmp_path / "web.jsonl", texts))
    expected = _windows(_reference_stream(texts))
    n = len(expected)
    config = _config(tmp_path, [web], {"web": 1.0}, batch__global_batch_size=4)
    config.batch.micro_batch_size = 4
    mix = open_mixture(config, build_plan(config), V)
    it = mix.batches(S, 4, seed=config.seed)
    rows = [r for _ in range(12) for r in next(it).tolist()]
    assert rows == [expected[k % n] for k in range(48)]  # pass after pass, in stream order
    assert [mix.epochs_before(s)["web"] for s in (0, 1, 12)] == [0, 1, -(-48 // n)]

    config.data.on_exhausted = "stop"
    mix = open_mixture(config, build_plan(config), V)
    first_over = n // 4  # the first step whose rows go past the n windows
    assert [mix.runs_out(s) for s in range(first_over + 1)] == [False] * first_over + [True]
    it = mix.batches(S, 4, seed=config.seed)
    for _ in range(first_over):
        next(it)
    if n % 4:
        with pytest.raises(RuntimeError, match="'web' is exhausted"):
            next(it)


# ----------------------------------------------------------------------------- the trainer
def _folder_source(tmp_path: Path) -> Path:
    """A folder with train.jsonl and validation.jsonl: datasets' names give the two splits."""
    _jsonl(tmp_path / "webdir" / "train.jsonl", _texts(12, 8, "abcde"))
    _jsonl(tmp_path / "webdir" / "validation.jsonl", _texts(20, 9, "abcde"))
    return tmp_path / "webdir"


RECIPE = """\
model: {{preset: sumi-tiny, overrides: {{vocab_size: 8192}}}}
data:
  seq_len: 16
  on_exhausted: {on_exhausted}
  sources:
    - {{name: web, kind: stream, path: {web}, tokenizer: {demo}}}
    - {{name: gen, kind: synthetic}}
  mixture: {{web: 0.5, gen: 0.5}}
batch: {{global_batch_size: 8, micro_batch_size: 8}}
steps: {steps}
seed: 3
device: cpu
num_threads: 1
eval: {{every: 3, batches: 1, batch_size: 4, nelbo_samples: 2}}
checkpoint: {{every: 3, keep_last: 0}}
log: {{progress: false}}
"""


def _recipe(tmp_path: Path, web: Path, *, steps: int = 6, on_exhausted: str = "epoch") -> Path:
    path = tmp_path / "stream.yaml"
    path.write_text(RECIPE.format(web=web, demo=DEMO, steps=steps, on_exhausted=on_exhausted))
    return path


def test_a_run_logs_checkpoints_and_resumes_a_streamed_source_exactly(tmp_path):
    recipe = _recipe(tmp_path, _folder_source(tmp_path))
    result = train(recipe, [f"out_dir={tmp_path / 'a'}"])
    log = read_jsonl(tmp_path / "a" / "train_log.jsonl")
    steps = [r for r in log if "loss" in r]
    assert len(steps) == 6 and steps[-1]["source_tokens"]["web"] + steps[-1]["source_tokens"]["gen"] == 6 * 8 * S
    passes = [r for r in log if r.get("kind") == "epoch"]
    assert passes and {r["source"] for r in passes} == {"web"}  # ~13 windows, ~24 rows: logged passes
    evals = [r for r in log if r.get("kind") == "eval"]
    assert evals and all("val_nelbo/web" in e and "val_nelbo/gen" in e for e in evals)  # the validation split
    state = json.loads((result.checkpoint / "trainer_state.json").read_text())
    assert state["data"]["source_tokens"] == steps[-1]["source_tokens"]
    assert state["data"]["stream_positions"]["web"]["seq_len"] == S
    # resume from step 3 in a fresh folder: the same losses, bit for bit
    (tmp_path / "b" / "checkpoints").mkdir(parents=True)
    shutil.copytree(tmp_path / "a" / "checkpoints" / "step_0000003", tmp_path / "b" / "checkpoints" / "step_0000003")
    resumed = train(recipe, [f"out_dir={tmp_path / 'b'}", "checkpoint.resume=true"])
    assert resumed.start_step == 3
    assert _losses(read_jsonl(tmp_path / "b" / "train_log.jsonl")) == _losses(steps)[3:]


def test_stop_ends_the_run_where_the_stream_runs_out_with_its_checkpoint_and_eval(tmp_path):
    web = _jsonl(tmp_path / "web.jsonl", _texts(25, 10, "abc"))
    recipe = _recipe(tmp_path, web, steps=40, on_exhausted="stop")
    config = TrainConfig.from_yaml(recipe, [f"out_dir={tmp_path / 'run'}"])
    mix = open_mixture(config, build_plan(config), V)
    n = len(_windows(_reference_stream(_texts(25, 10, "abc"))))
    end = next(s for s in range(40) if mix.rows_before(s + 1)[0] > n)  # the steps that fit
    result = train(config)
    assert result.step == end and result.checkpoint.name == f"step_{end:07d}"
    log = read_jsonl(tmp_path / "run" / "train_log.jsonl")
    assert max(s for s, _ in _losses(log)) == end
    assert [r["step"] for r in log if r.get("kind") == "eval"][-1] == end
    assert not [r for r in log if r.get("kind") == "epoch"]  # nothing was read twice


def test_dry_run_and_stats_say_a_streams_length_is_unknown(tmp_path, capsys):
    from sumi.training.cli import main

    web = _jsonl(tmp_path / "web.jsonl", _texts(10, 11, "ab"))
    assert main([str(_recipe(tmp_path, web)), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "[streamed: length unknown until read]" in out and "[endless]" in out
    s = stats(web)
    assert s["kind"] == "streamed" and s["files"] == 1 and "num_tokens" not in s
    assert stats("hf:owner/name")["files"] is None


# ----------------------------------------------------------------------------- bad sources
@pytest.mark.parametrize(
    "change, message",
    [
        ({"path": "{tmp}/missing.jsonl"}, r"source 'web'.*'[^']*missing\.jsonl' does not exist"),
        ({"path": "{tmp}/none-*.jsonl"}, r"source 'web'.*matches no files"),
        ({"text_field": "body"}, r"source 'web'.*no text field 'body' \(fields: \['text', 'id'\]\)"),
        ({"path": "{tmp}/empty.jsonl"}, r"source 'web'.*empty: the data files '[^']*empty\.jsonl' hold no records"),
        ({"path": "{tmp}/blank.jsonl"}, r"source 'web'.*empty: its documents hold 0 tokens"),
        ({"path": "{tmp}/short.jsonl"}, r"source 'web'.*empty: its documents hold \d tokens, not one window"),
        (
            {"path": "hf:sumi-tests/not-in-any-cache"},
            r"source 'web'.*'sumi-tests/not-in-any-cache' is not available offline",
        ),
        ({"train_split": "dev"}, r"source 'web'.*one split, 'train'; there is no split 'dev'"),
        ({"tokenizer": "{tmp}/no-tokenizer"}, r"source 'web'"),
    ],
)
def test_a_bad_streamed_source_fails_before_any_work(tmp_path, capsys, change, message):
    from sumi.training.cli import main

    _jsonl(tmp_path / "web.jsonl", _texts(10, 12, "ab"))
    (tmp_path / "empty.jsonl").write_text("")
    _jsonl(tmp_path / "blank.jsonl", ["", "", None])
    _jsonl(tmp_path / "short.jsonl", ["a"])
    recipe = _recipe(tmp_path, tmp_path / "web.jsonl")
    out = tmp_path / "never"
    overrides = [f"out_dir={out}"] + [f"data.sources.0.{k}={v.format(tmp=tmp_path)}" for k, v in change.items()]
    with pytest.raises(ConfigError, match=message):
        train(recipe, overrides)
    assert not out.exists()
    assert main([str(recipe), *overrides]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "source 'web'" in err[0] and "Traceback" not in err[0]


def test_config_keys_of_a_streamed_source_are_checked(tmp_path):
    web = {"name": "web", "kind": "stream", "path": str(tmp_path / "w.jsonl")}
    with pytest.raises(ConfigError, match=r"'data\.sources\.0\.tokenizer'.*tokenized on the fly"):
        _config(tmp_path, [web], {"web": 1.0})
    with pytest.raises(ConfigError, match=r"'data\.sources\.0\.path'.*kind stream"):
        _config(tmp_path, [{"name": "web", "kind": "stream", "tokenizer": "dolma2"}], {"web": 1.0})
    with pytest.raises(ConfigError, match=r"'data\.sources\.0\.kind'.*'packed', 'stream' or 'synthetic'"):
        _config(tmp_path, [{"name": "web", "kind": "hf"}], {"web": 1.0})


def test_offline_a_hub_name_falls_back_to_the_datasets_cache(monkeypatch):
    import datasets

    from sumi.data import streamed

    calls = []

    def fake_load(name, subset=None, *, split, streaming=False):
        calls.append((name, subset, split, streaming))
        if streaming:
            raise ConnectionError("Couldn't reach 'owner/name' on the Hub (OfflineModeIsEnabled)")
        return datasets.Dataset.from_dict({"text": ["cached document"]})

    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    ds = streamed.open_stream("hf:owner/name", split="train", subset="en")
    assert list(ds) == [{"text": "cached document"}]
    assert calls == [("owner/name", "en", "train", True), ("owner/name", "en", "train", False)]
    with pytest.raises(ValueError, match="split is a key of its own"):
        streamed.open_stream("hf:owner/name:train")


# ----------------------------------------------------------------------------- processes (slow)
@pytest.mark.slow
def test_two_processes_match_one_with_a_streamed_source(tmp_path):
    recipe = _recipe(tmp_path, _folder_source(tmp_path), steps=4)
    _run(["-m", "sumi.training", recipe.name, "out_dir=one"], cwd=tmp_path)
    _run(
        torchrun_args("sumi.training", recipe.name, "out_dir=two", "batch.micro_batch_size=2"),
        cwd=tmp_path,
    )
    one, two = read_jsonl(tmp_path / "one" / "train_log.jsonl"), read_jsonl(tmp_path / "two" / "train_log.jsonl")
    assert len(_losses(one)) == 4
    _close(_losses(two), _losses(one), rel=1e-5)
    assert [r["source_tokens"] for r in one if "loss" in r] == [r["source_tokens"] for r in two if "loss" in r]
    assert [r for r in one if r.get("kind") == "epoch"] == [r for r in two if r.get("kind") == "epoch"]
    states = [
        json.loads((tmp_path / run / "checkpoints" / "step_0000004" / "trainer_state.json").read_text())
        for run in ("one", "two")
    ]
    assert states[0]["data"]["stream_positions"] == states[1]["data"]["stream_positions"]
    assert np.isfinite([loss for _, loss in _losses(two)]).all()
