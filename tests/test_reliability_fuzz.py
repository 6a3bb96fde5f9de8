"""A corpus of bad CLI invocations and API calls, as a careless or hostile user would make them
(issue 14, "Show"). Each must end in a one-line error (the last stderr line, the only one that says
"error"; or, for the API, a ValueError/TypeError/File*Error with a one-line message), with a
non-zero exit status, no traceback, and nothing written, changed or deleted in its folder.

Run as a script for the table of cases: ``python tests/test_reliability_fuzz.py``.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

HERE = Path(__file__).parent
BENCH = HERE / "fixtures" / "eval" / "benchmarks"
TINY = dict(
    model_type="sumi",
    vocab_size=300,
    hidden_size=32,
    intermediate_size=48,
    num_hidden_layers=4,
    num_attention_heads=2,
    num_key_value_heads=1,
    max_position_embeddings=64,
    bos_token_id=2,
    eos_token_id=1,
    pad_token_id=0,
)
API_ERRORS = (ValueError, TypeError, FileExistsError, FileNotFoundError, NotADirectoryError, IsADirectoryError)


# ----------------------------------------------------------------------------- shared inputs
def build_assets(root: Path) -> Path:
    """Inputs the cases read (never write): a corpus, a tokenizer, a model folder, a dataset."""
    import torch
    from safetensors.torch import save_file

    from sumi import SumiConfig, SumiForMaskGeneration
    from sumi.data import prepare_dataset, train_tokenizer

    corpus = root / "corpus"
    corpus.mkdir()
    for i in range(12):
        (corpus / f"d{i}.txt").write_text(f"def f{i}(x):\n    return x + {i}\n" * (1 + i % 3))
    train_tokenizer(sorted(corpus.glob("*.txt")), root / "tok", 300)
    prepare_dataset([corpus], root / "dataset", str(root / "tok"), num_workers=1, progress=False, val_fraction=0.2)
    torch.manual_seed(0)
    SumiForMaskGeneration(SumiConfig(**{k: v for k, v in TINY.items() if k != "model_type"})).save_pretrained(
        root / "model"
    )
    torch.manual_seed(0)
    SumiForMaskGeneration(
        SumiConfig(**dict({k: v for k, v in TINY.items() if k != "model_type"}, num_hidden_layers=8))
    ).save_pretrained(root / "model8")
    from safetensors.torch import load_file

    for folder in ("model", "model8"):  # with a tokenizer, so that `generate` would run
        for f in (root / "tok").iterdir():
            shutil.copy(f, root / folder / f.name)
    state = {k: v.clone() for k, v in load_file(root / "model" / "model.safetensors").items()}
    torch.save(state, root / "state.pt")
    save_file(state, str(root / "state.safetensors"), metadata={"format": "pt"})
    return root


def _model_variant(work: Path, assets: Path, name: str = "m", **edit) -> Path:
    """A copy of the tiny model folder in `work`, edited: config=dict|str, weights=bytes|dict, files={}."""
    import torch
    from safetensors.torch import save_file

    folder = work / name
    shutil.copytree(assets / "model", folder)
    if "config" in edit:
        c = edit["config"]
        (folder / "config.json").write_text(c if isinstance(c, str) else json.dumps(c))
    if "weights" in edit:
        w = edit["weights"]
        if isinstance(w, bytes):
            (folder / "model.safetensors").write_bytes(w)
        else:
            state = torch.load(assets / "state.pt")
            state.update(w)
            for k in [k for k, v in w.items() if v is None]:
                del state[k]
            save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    for rel, data in edit.get("files", {}).items():
        (folder / rel).write_bytes(data) if isinstance(data, bytes) else (folder / rel).write_text(data)
    return folder


# ----------------------------------------------------------------------------- cases
@dataclass
class Case:
    name: str = ""
    argv: Callable[[Path, Path], list[str]] | None = None  # (work, assets) -> CLI arguments
    call: Callable[[Path, Path], object] | None = None  # (work, assets) -> an API call
    setup: Callable[[Path, Path], None] = field(default=lambda work, assets: None)


def _state_file(assets: Path) -> bytes:
    return (assets / "model" / "model.safetensors").read_bytes()


def _garbage_jsonl(work, assets):
    (work / "bin.jsonl").write_bytes(b"\x7fELF\x02\x01" + bytes(range(128, 256)) + b"\n")


def _truncated_gz(work, assets):
    data = gzip.compress(b"some text " * 400)
    (work / "t.txt.gz").write_bytes(data[:40])


def _photos(work, assets):
    (work / "photos" / "2024").mkdir(parents=True)
    (work / "photos" / "cat.jpg").write_bytes(b"\xff\xd8cat")


def _corrupt_dataset(work, assets):
    shutil.copytree(assets / "dataset", work / "ds")
    shard = sorted((work / "ds").glob("train-*.bin"))[0]
    data = bytearray(shard.read_bytes())
    data[0] ^= 0xFF
    shard.write_bytes(bytes(data))


def _bench_bad_label(work, assets):
    shutil.copytree(BENCH, work / "bench")
    path = work / "bench" / "piqa_validation.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    rows[0]["label"] = 5
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def _recipe(text: str | bytes):
    def setup(work, assets):
        p = work / "r.yaml"
        p.write_bytes(text) if isinstance(text, bytes) else p.write_text(text)

    return setup


def _cases() -> list[Case]:
    import torch

    def model(**edit):
        return lambda w, a: _model_variant(w, a, **edit)

    def gen(folder_fn, *extra):
        return Case(
            "",
            setup=lambda w, a: folder_fn(w, a),
            argv=lambda w, a: ["generate", "hi", "--model", str(w / "m"), "-n", "4", "--steps", "2", *extra],
        )

    def named(name, case):
        case.name = name
        return case

    tok = lambda w, a: str(a / "tok")  # noqa: E731
    prep = lambda *args: (
        lambda w, a: [
            "data",
            "prepare",
            *[x(w, a) if callable(x) else x for x in args],  # noqa: E731
            "--tokenizer",
            tok(w, a),
            "--workers",
            "1",
            "--no-progress",
        ]
    )
    out = lambda w, a: str(w / "out")  # noqa: E731
    corpus = lambda w, a: str(a / "corpus")  # noqa: E731
    full = {k: v for k, v in TINY.items()}
    cases = [
        # data prepare
        named(
            "prepare --overwrite a folder that is not a dataset",
            Case(setup=_photos, argv=prep(corpus, "-o", lambda w, a: str(w / "photos"), "--overwrite")),
        ),
        named(
            "prepare --overwrite a regular file",
            Case(
                setup=lambda w, a: (w / "f.txt").write_text("mine"),
                argv=prep(corpus, "-o", lambda w, a: str(w / "f.txt"), "--overwrite"),
            ),
        ),
        named(
            "prepare -o the input folder --overwrite",
            Case(
                setup=lambda w, a: shutil.copytree(a / "corpus", w / "in"),
                argv=prep(lambda w, a: str(w / "in"), "-o", lambda w, a: str(w / "in"), "--overwrite"),
            ),
        ),
        named(
            "prepare an existing dataset without --overwrite",
            Case(
                setup=lambda w, a: shutil.copytree(a / "dataset", w / "ds"),
                argv=prep(corpus, "-o", lambda w, a: str(w / "ds")),
            ),
        ),
        named("prepare a missing input", Case(argv=prep(lambda w, a: str(w / "nope.txt"), "-o", out))),
        named(
            "prepare an unsupported extension",
            Case(
                setup=lambda w, a: (w / "x.csv").write_text("a,b"), argv=prep(lambda w, a: str(w / "x.csv"), "-o", out)
            ),
        ),
        named(
            "prepare a truncated .gz", Case(setup=_truncated_gz, argv=prep(lambda w, a: str(w / "t.txt.gz"), "-o", out))
        ),
        named(
            "prepare a binary .jsonl",
            Case(setup=_garbage_jsonl, argv=prep(lambda w, a: str(w / "bin.jsonl"), "-o", out)),
        ),
        named(
            "prepare .jsonl without the text field",
            Case(
                setup=lambda w, a: (w / "a.jsonl").write_text('{"body": "x"}\n'),
                argv=prep(lambda w, a: str(w / "a.jsonl"), "-o", out),
            ),
        ),
        named(
            "prepare .jsonl with a broken line",
            Case(
                setup=lambda w, a: (w / "a.jsonl").write_text('{"text": "x"}\n{"text": \n'),
                argv=prep(lambda w, a: str(w / "a.jsonl"), "-o", out),
            ),
        ),
        named("prepare --val-fraction 1.5", Case(argv=prep(corpus, "-o", out, "--val-fraction", "1.5"))),
        named("prepare --val-fraction -0.1", Case(argv=prep(corpus, "-o", out, "--val-fraction", "-0.1"))),
        named("prepare --shard-tokens 0", Case(argv=prep(corpus, "-o", out, "--shard-tokens", "0"))),
        named("prepare --dtype int8", Case(argv=prep(corpus, "-o", out, "--dtype", "int8"))),
        named(
            "prepare with an unknown tokenizer",
            Case(
                argv=lambda w, a: [
                    "data",
                    "prepare",
                    str(a / "corpus"),
                    "-o",
                    str(w / "out"),
                    "--tokenizer",
                    str(w / "no-tok"),
                    "--no-progress",
                ]
            ),
        ),
        named(
            "prepare an empty corpus",
            Case(setup=lambda w, a: (w / "e.txt").write_text(""), argv=prep(lambda w, a: str(w / "e.txt"), "-o", out)),
        ),
        named("prepare without inputs", Case(argv=prep("-o", out))),
        named(
            "prepare an empty folder",
            Case(setup=lambda w, a: (w / "d").mkdir(), argv=prep(lambda w, a: str(w / "d"), "-o", out)),
        ),
        # data stats
        named(
            "data stats on a folder that is not a dataset",
            Case(setup=_photos, argv=lambda w, a: ["data", "stats", str(w / "photos")]),
        ),
        named("data stats on a missing path", Case(argv=lambda w, a: ["data", "stats", str(w / "nope")])),
        named(
            "data stats --verify on a corrupt shard",
            Case(setup=_corrupt_dataset, argv=lambda w, a: ["data", "stats", str(w / "ds"), "--verify"]),
        ),
        # tokenizer train
        named(
            "tokenizer train -o an existing folder",
            Case(
                setup=lambda w, a: ((w / "t").mkdir(), (w / "t" / "keep").write_text("k")),
                argv=lambda w, a: [
                    "tokenizer",
                    "train",
                    str(a / "corpus" / "d0.txt"),
                    "-o",
                    str(w / "t"),
                    "--vocab-size",
                    "300",
                ],
            ),
        ),
        named(
            "tokenizer train --min-frequency -1",
            Case(
                argv=lambda w, a: [
                    "tokenizer",
                    "train",
                    str(a / "corpus" / "d0.txt"),
                    "-o",
                    str(w / "t"),
                    "--vocab-size",
                    "300",
                    "--min-frequency",
                    "-1",
                ]
            ),
        ),
        named(
            "tokenizer train on a folder",
            Case(
                argv=lambda w, a: ["tokenizer", "train", str(a / "corpus"), "-o", str(w / "t"), "--vocab-size", "300"]
            ),
        ),
        named(
            "tokenizer train on a missing file",
            Case(
                argv=lambda w, a: ["tokenizer", "train", str(w / "nope.txt"), "-o", str(w / "t"), "--vocab-size", "300"]
            ),
        ),
        named(
            "tokenizer train --vocab-size 10",
            Case(
                argv=lambda w, a: [
                    "tokenizer",
                    "train",
                    str(a / "corpus" / "d0.txt"),
                    "-o",
                    str(w / "t"),
                    "--vocab-size",
                    "10",
                ]
            ),
        ),
        named(
            "tokenizer train --vocab-size -5",
            Case(
                argv=lambda w, a: [
                    "tokenizer",
                    "train",
                    str(a / "corpus" / "d0.txt"),
                    "-o",
                    str(w / "t"),
                    "--vocab-size",
                    "-5",
                ]
            ),
        ),
        named(
            "tokenizer train without files",
            Case(argv=lambda w, a: ["tokenizer", "train", "-o", str(w / "t"), "--vocab-size", "300"]),
        ),
        # checkpoints that do not match their config, broken files
        named(
            "generate: config of 4 layers over 8 layers of weights",
            gen(
                lambda w, a: (
                    shutil.copytree(a / "model8", w / "m"),
                    (w / "m" / "config.json").write_text(json.dumps(full)),
                )
            ),
        ),
        named("generate: empty model.safetensors", gen(model(weights=b""))),
        named(
            "generate: truncated model.safetensors",
            gen(lambda w, a: _model_variant(w, a, weights=_state_file(a)[:300])),
        ),
        named("generate: garbage model.safetensors", gen(model(weights=b"\x00" * 64 + b"garbage" * 10))),
        named("generate: a tensor of the wrong shape", gen(model(weights={"lm_head.weight": torch.zeros(300, 16)}))),
        named(
            "generate: an integer tensor", gen(model(weights={"model.norm.weight": torch.ones(32, dtype=torch.int32)}))
        ),
        named("generate: an extra tensor", gen(model(weights={"extra.weight": torch.zeros(3)}))),
        named("generate: a missing tensor", gen(model(weights={"lm_head.weight": None}))),
        named(
            "generate: a pickled pytorch_model.bin only",
            gen(
                lambda w, a: (
                    _model_variant(w, a),
                    (w / "m" / "model.safetensors").unlink(),
                    shutil.copy(a / "state.pt", w / "m" / "pytorch_model.bin"),
                )
            ),
        ),
        named("generate: config.json is a JSON list", gen(model(config="[1, 2]"))),
        named("generate: config.json is broken JSON", gen(model(config="{broken"))),
        named(
            "generate: broken weight index",
            gen(
                lambda w, a: (
                    _model_variant(w, a),
                    (w / "m" / "model.safetensors").unlink(),
                    (w / "m" / "model.safetensors.index.json").write_text("{bad"),
                )
            ),
        ),
        named("generate: broken generation_config.json", gen(model(files={"generation_config.json": "{bad"}))),
        named(
            "generate: a missing model folder",
            Case(argv=lambda w, a: ["generate", "hi", "--model", str(w / "nope") + "/", "-n", "4"]),
        ),
        named(
            "generate --dtype int4",
            Case(argv=lambda w, a: ["generate", "hi", "--model", "sumi-tiny", "--dtype", "int4"]),
        ),
        named("generate --steps 0", Case(argv=lambda w, a: ["generate", "hi", "--model", "sumi-tiny", "--steps", "0"])),
        named(
            "generate --prompts-file missing",
            Case(argv=lambda w, a: ["generate", "--model", "sumi-tiny", "--prompts-file", str(w / "nope")]),
        ),
        named(
            "info: a config with only model_type",
            Case(
                setup=lambda w, a: _model_variant(w, a, config={"model_type": "sumi"}),
                argv=lambda w, a: ["info", str(w / "m")],
            ),
        ),
        named(
            "info: config.json is a JSON list",
            Case(setup=lambda w, a: _model_variant(w, a, config="[]"), argv=lambda w, a: ["info", str(w / "m")]),
        ),
        named("info --canvas-length 0", Case(argv=lambda w, a: ["info", "sumi-tiny", "--canvas-length", "0"])),
        named("info on a missing path", Case(argv=lambda w, a: ["info", str(w / "nope") + "/"])),
        # evaluation
        named(
            "eval --offline unknown task",
            Case(argv=lambda w, a: ["eval", "--offline", "nosuch", "--model", "sumi-tiny", "--data-dir", str(BENCH)]),
        ),
        named(
            "eval --offline --data-dir missing",
            Case(
                argv=lambda w, a: ["eval", "--offline", "piqa", "--model", "sumi-tiny", "--data-dir", str(w / "nope")]
            ),
        ),
        named(
            "eval --offline piqa with an out-of-range gold label",
            Case(
                setup=_bench_bad_label,
                argv=lambda w, a: [
                    "eval",
                    "--offline",
                    "piqa",
                    "--model",
                    "sumi-tiny",
                    "--data-dir",
                    str(w / "bench"),
                    "--limit",
                    "2",
                    "--no-progress",
                ],
            ),
        ),
        named(
            "eval --code-timeout 0",
            Case(
                argv=lambda w, a: [
                    "eval",
                    "--offline",
                    "humaneval",
                    "--model",
                    "sumi-tiny",
                    "--data-dir",
                    str(BENCH),
                    "--allow-code-execution",
                    "--code-timeout",
                    "0",
                    "--limit",
                    "1",
                    "--no-progress",
                ]
            ),
        ),
        named(
            "eval --code-memory-mb 0",
            Case(argv=lambda w, a: ["eval", "--offline", "humaneval", "--model", "sumi-tiny", "--code-memory-mb", "0"]),
        ),
        named(
            "perplexity on a missing file",
            Case(argv=lambda w, a: ["perplexity", str(w / "nope.txt"), "--model", "sumi-tiny"]),
        ),
        # export, train
        named("export a missing checkpoint", Case(argv=lambda w, a: ["export", str(w / "nope"), str(w / "out")])),
        named(
            "export into a folder that is not an export",
            Case(setup=_photos, argv=lambda w, a: ["export", str(w / "nope"), str(w / "photos")]),
        ),
        named("train a missing recipe", Case(argv=lambda w, a: ["train", str(w / "nope.yaml")])),
        named(
            "train a binary recipe",
            Case(setup=_recipe(b"\x00\x01\xfe\xff" * 20), argv=lambda w, a: ["train", str(w / "r.yaml")]),
        ),
        named(
            "train a recipe with an unknown key",
            Case(
                setup=_recipe("model: {preset: sumi-tiny}\nstepz: 3\n"), argv=lambda w, a: ["train", str(w / "r.yaml")]
            ),
        ),
        named(
            "train --dry-run --world-size -4",
            Case(
                setup=_recipe("model: {preset: sumi-tiny}\nsteps: 3\n"),
                argv=lambda w, a: ["train", str(w / "r.yaml"), "--dry-run", "--world-size", "-4"],
            ),
        ),
    ]
    cases += _api_cases()
    return cases


def _api_cases() -> list[Case]:
    import torch  # noqa: F401

    def api(name, fn, setup=lambda w, a: None):
        return Case(name, call=fn, setup=setup)

    def prepare(w, a, out, **kw):
        from sumi.data import prepare_dataset

        return prepare_dataset([a / "corpus"], out, str(a / "tok"), num_workers=1, progress=False, **kw)

    def load(path, **kw):
        from sumi.loading import load as sumi_load

        return sumi_load(path, **kw)

    def tiny(w, a, **edit):
        _model_variant(w, a, **edit)

    return [
        api(
            "API prepare_dataset(overwrite=True) on a non-dataset folder",
            lambda w, a: prepare(w, a, w / "photos", overwrite=True),
            _photos,
        ),
        api("API prepare_dataset(val_fraction=2)", lambda w, a: prepare(w, a, w / "out", val_fraction=2)),
        api("API prepare_dataset(dtype='int8')", lambda w, a: prepare(w, a, w / "out", dtype="int8")),
        api(
            "API train_tokenizer(min_frequency=-1)",
            lambda w, a: __import__("sumi.data", fromlist=["x"]).train_tokenizer(
                [a / "corpus" / "d0.txt"], w / "t", 300, min_frequency=-1
            ),
        ),
        api("API load: config.json is a JSON list", lambda w, a: load(w / "m"), lambda w, a: tiny(w, a, config="[1]")),
        api(
            "API load: garbage safetensors", lambda w, a: load(w / "m"), lambda w, a: tiny(w, a, weights=b"\x01" * 100)
        ),
        api(
            "API load: pickled weights only",
            lambda w, a: load(w / "m"),
            lambda w, a: (
                tiny(w, a),
                (w / "m" / "model.safetensors").unlink(),
                shutil.copy(a / "state.pt", w / "m" / "pytorch_model.bin"),
            ),
        ),
        api("API load: dtype='int3'", lambda w, a: load(w / "m", dtype="int3"), lambda w, a: tiny(w, a)),
        api("API load: an unknown Hub id offline", lambda w, a: load("no-such-owner/no-such-model")),
        api(
            "API load: a config of 4 layers over 8 layers of weights",
            lambda w, a: load(w / "m"),
            lambda w, a: (
                shutil.copytree(a / "model8", w / "m"),
                (w / "m" / "config.json").write_text(json.dumps(TINY)),
            ),
        ),
        api(
            "API run_program(timeout=0)",
            lambda w, a: __import__("sumi.evaluation.execution", fromlist=["x"]).run_program("pass", timeout=0),
        ),
        api(
            "API load_task with an out-of-range gold label",
            lambda w, a: __import__("sumi.evaluation.tasks", fromlist=["x"]).load_task("piqa", w / "bench"),
            _bench_bad_label,
        ),
        api(
            "API export_checkpoint of a missing checkpoint",
            lambda w, a: __import__("sumi.training", fromlist=["x"]).export_checkpoint(w / "nope", w / "out"),
        ),
    ]


# ----------------------------------------------------------------------------- running
def _snapshot(folder: Path) -> dict[str, bytes | None]:
    return {
        p.relative_to(folder).as_posix(): (None if p.is_dir() else p.read_bytes()) for p in sorted(folder.rglob("*"))
    }


def _quiet_env():
    """The environment the CLI cases share (offline, no progress bars)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


def run_case(case: Case, work: Path, assets: Path) -> str:
    """'ok' or what is wrong."""
    import warnings

    case.setup(work, assets)
    before = _snapshot(work)
    problems = []
    if case.argv is not None:
        from sumi.cli import main

        err, out = io.StringIO(), io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                code = main(case.argv(work, assets))
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else 1
            except BaseException as e:  # noqa: BLE001 - an escaped exception is what we look for
                code, _ = None, err.write(f"Traceback (escaped): {type(e).__name__}: {e}\n")
        text = err.getvalue()
        lines = [line for line in text.splitlines() if line.strip()]
        if "Traceback" in text + out.getvalue():
            problems.append("traceback")
        if code == 0:
            problems.append("exit 0")
        if not lines or "error" not in lines[-1]:
            problems.append("no error line")
        elif sum("error" in line.lower() for line in lines) > 1:
            problems.append("several error lines")
    else:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                case.call(work, assets)
            problems.append("no error")
        except BaseException as e:  # noqa: BLE001 - what escapes is what we judge
            # builtin errors of the argument's kind, or sumi's own (CheckpointError); not a bare
            # KeyError, IndexError, JSONDecodeError or SafetensorError from deep inside
            if type(e) not in API_ERRORS and not type(e).__module__.startswith("sumi."):
                problems.append(type(e).__name__)
            elif "\n" in str(e).strip() or not str(e).strip():
                problems.append("not one line")
    if _snapshot(work) != before:
        problems.append("changed files")
    return "ok" if not problems else ", ".join(problems)


CASES = _cases()


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    _quiet_env()
    return build_assets(tmp_path_factory.mktemp("assets"))


def test_corpus_is_large_enough():
    assert len(CASES) >= 60 and len({c.name for c in CASES}) == len(CASES)


def test_the_unbroken_inputs_work(assets, tmp_path, capsys):
    """Controls: the cases fail for what they break, not for a missing tokenizer or the like."""
    from sumi.cli import main

    assert main(["generate", "hi", "--model", str(assets / "model"), "-n", "4", "--steps", "2"]) == 0
    assert main(["info", str(assets / "model")]) == 0
    assert (
        main(
            [
                "data",
                "prepare",
                str(assets / "corpus"),
                "-o",
                str(tmp_path / "ds"),
                "--tokenizer",
                str(assets / "tok"),
                "--workers",
                "1",
                "--no-progress",
            ]
        )
        == 0
    )
    assert main(["data", "stats", str(assets / "dataset"), "--verify"]) == 0


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_gives_one_line_error(case, assets, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    assert run_case(case, work, assets) == "ok"


@pytest.mark.slow
def test_as_a_subprocess_the_exit_status_is_2_and_stderr_one_line(tmp_path):
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(HERE.parent / "src"))
    victim = tmp_path / "photos"
    victim.mkdir()
    (victim / "cat.jpg").write_bytes(b"cat")
    for argv in (
        ["data", "prepare", str(HERE), "-o", str(victim), "--overwrite", "--no-progress"],
        ["info", str(tmp_path / "nope") + "/"],
    ):
        proc = subprocess.run(
            [sys.executable, "-m", "sumi.cli", *argv], capture_output=True, text=True, env=env, timeout=300
        )
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith("sumi: error:"), proc.stderr
    assert (victim / "cat.jpg").read_bytes() == b"cat"


if __name__ == "__main__":  # the table of cases
    _quiet_env()
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "assets").mkdir()
        assets_dir = build_assets(Path(tmp) / "assets")
        print("| case | result |\n|---|---|")
        for i, c in enumerate(CASES):
            w = Path(tmp) / f"w{i}"
            w.mkdir()
            try:
                result = run_case(c, w, assets_dir)
            except BaseException as e:  # noqa: BLE001 - a case that cannot even be set up
                result = f"setup failed: {type(e).__name__}"
            print(f"| {c.name} | {result} |", flush=True)
