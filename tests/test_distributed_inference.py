"""Data-parallel inference (issue 18): the shared machinery (`sumi.distributed_inference`) in one
process, then `sumi eval`, `sumi generate --prompts-file` and `sumi perplexity` with 2 CPU processes
under torchrun (or a bare launcher) against 1 process: the same results item by item, a killed
rank ending the run within seconds, and --resume recomputing only the missing shard."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
import torch.distributed as dist

from sumi.distributed_inference import (
    LaunchEnv,
    Peers,
    ShardFiles,
    chunks,
    fingerprint,
    launch_env,
    shard_bounds,
    sharded_map,
)

FIXTURES = Path(__file__).parent / "fixtures" / "eval"
ENV = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
for _name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
    ENV.pop(_name, None)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ----------------------------------------------------------------------------- launch environment
def test_launch_env_reads_torchrun_variables_and_defaults_to_one_process():
    assert launch_env({}) == LaunchEnv(0, 1, 0)
    assert launch_env({"LOCAL_RANK": "3"}) == LaunchEnv(0, 1, 3)
    env = launch_env({"RANK": "5", "WORLD_SIZE": "8", "LOCAL_RANK": "1", "MASTER_ADDR": "h", "MASTER_PORT": "1"})
    assert (env.rank, env.world_size, env.local_rank, env.is_main) == (5, 8, 1, False)


@pytest.mark.parametrize(
    "environ, needle",
    [
        ({"RANK": "x", "WORLD_SIZE": "2"}, "RANK must be an integer"),
        ({"RANK": "2", "WORLD_SIZE": "2", "MASTER_ADDR": "h", "MASTER_PORT": "1"}, "RANK must be below WORLD_SIZE"),
        ({"RANK": "0"}, "WORLD_SIZE is not set"),
        ({"RANK": "0", "WORLD_SIZE": "0"}, "WORLD_SIZE must be an integer >= 1"),
        ({"RANK": "0", "WORLD_SIZE": "2", "MASTER_PORT": "1"}, "MASTER_ADDR is not set"),
    ],
)
def test_launch_env_rejects_a_broken_environment_naming_the_variable(environ, needle):
    with pytest.raises(ValueError, match=needle):
        launch_env(environ)


# ----------------------------------------------------------------------------- splitting work
def test_shard_bounds_cover_the_items_once_in_order_with_balanced_blocks():
    for n in range(0, 23):
        for world in range(1, 6):
            blocks = [shard_bounds(n, r, world) for r in range(world)]
            assert [i for a, b in blocks for i in range(a, b)] == list(range(n))
            sizes = [b - a for a, b in blocks]
            assert max(sizes) - min(sizes) <= 1
    with pytest.raises(ValueError, match="rank must lie in"):
        shard_bounds(4, 2, 2)


def test_chunks_split_a_range_into_blocks_of_at_most_size():
    assert chunks(0, 3) == []
    assert chunks(7, 3) == [(0, 3), (3, 6), (6, 7)]
    assert chunks(7, None) == [(0, 7)]


# ----------------------------------------------------------------------------- shard files
def test_shard_files_round_trip_and_ignore_other_settings_overlaps_and_broken_files(tmp_path):
    files = ShardFiles(tmp_path, "piqa", {"seed": 1})
    files.write({"a": {"x": 1}, "b": {"x": 2}}, {"truncated_inputs": 1})
    files.write({"c": {"x": 3}}, {"truncated_inputs": 2})
    ShardFiles(tmp_path, "piqa", {"seed": 2}).write({"d": {"x": 4}})  # other settings
    (tmp_path / f"piqa.{files.fingerprint}.broken-1.json").write_text("{not json")
    (tmp_path / f"piqa.{files.fingerprint}.dup-1.json").write_text(
        json.dumps(dict(fingerprint=files.fingerprint, records={"a": {"x": 9}}, counts={}))
    )  # repeats key "a"
    records, counts, used = files.load()
    assert records == {"a": {"x": 1}, "b": {"x": 2}, "c": {"x": 3}}
    assert counts == {"truncated_inputs": 3} and used == 2
    assert not list(tmp_path.glob(".*"))  # no staging file left behind
    assert fingerprint({"a": 1, "b": 2}) == fingerprint({"b": 2, "a": 1}) != fingerprint({"a": 1, "b": 3})
    assert files.clear() == 4 and files.load() == ({}, {}, 0)


def test_sharded_map_in_one_process_resumes_only_the_missing_shard(tmp_path):
    items = [f"item{i}" for i in range(10)]
    keys = [str(i) for i in range(10)]
    scored: list[str] = []

    def score(block):
        scored.extend(block)
        return [{"len": len(x), "x": x} for x in block], {"n": len(block)}

    peers = Peers(LaunchEnv())
    files = ShardFiles(tmp_path, "task", {"v": 1})
    first = sharded_map(score, items, keys, peers, shards=files, shard_size=4)
    assert first.records == [{"len": len(x), "x": x} for x in items] and first.counts == {"n": 10}
    assert (first.computed, first.resumed) == (10, 0)
    shard_files = sorted(tmp_path.glob("task.*.json"))
    assert len(shard_files) == 3  # blocks of 4, 4, 2
    missing = next(p for p in shard_files if "4-4" in p.name)  # items 4..7
    missing.unlink()
    scored.clear()
    again = sharded_map(score, items, keys, peers, shards=files, resume=True, shard_size=4)
    assert scored == items[4:8]
    assert again.records == first.records and again.counts == {"n": 10}
    assert (again.computed, again.resumed) == (4, 6)
    scored.clear()
    fresh = sharded_map(score, items, keys, peers, shards=files, resume=False, shard_size=4)
    assert scored == items and fresh.records == first.records  # without resume: everything again


def test_sharded_map_rejects_missing_or_repeated_keys():
    with pytest.raises(ValueError, match="one unique key per item"):
        sharded_map(lambda b: (b, {}), [1, 2], ["a", "a"], Peers(LaunchEnv()))


# ----------------------------------------------------------------------------- peers over a real store
def test_peers_gather_in_rank_order_and_broadcast_over_a_store():
    port = _free_port()
    master = dist.TCPStore("127.0.0.1", port, 2, True, timedelta(seconds=20), wait_for_workers=False)
    client = dist.TCPStore("127.0.0.1", port, 2, False, timedelta(seconds=20))
    out: dict[int, tuple] = {}

    def rank(r, store):
        with Peers(LaunchEnv(r, 2, r), store=store, heartbeat_s=0.05, dead_after_s=5) as peers:
            got = peers.gather({"rank": r, "items": list(range(r * 3, r * 3 + 3))})
            everyone = peers.all_gather(r * 10)
            seed = peers.broadcast(1234 if r == 0 else None)
            peers.barrier()
            out[r] = (got, everyone, seed)

    threads = [threading.Thread(target=rank, args=(r, s)) for r, s in ((0, master), (1, client))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert out[0][0] == [{"rank": 0, "items": [0, 1, 2]}, {"rank": 1, "items": [3, 4, 5]}]
    assert out[1][0] is None
    assert out[0][1] == out[1][1] == [0, 10]
    assert out[0][2] == out[1][2] == 1234


def test_harness_model_reports_rank_and_world_size():
    pytest.importorskip("lm_eval")
    import torch

    from sumi import SumiConfig, SumiForMaskGeneration
    from sumi.evaluation.harness import SumiLM

    model = SumiForMaskGeneration(SumiConfig.from_preset("sumi-tiny"))
    lm = SumiLM(model, peers=Peers(LaunchEnv()))
    assert (lm.rank, lm.world_size) == (0, 1)
    assert lm.all_gather(torch.tensor(7)).tolist() == [7]
    assert lm.gather_object({"a": 1}) == [{"a": 1}]


# ----------------------------------------------------------------------------- multi-process runs
def _data_dir(tmp_path: Path) -> Path:
    """piqa / arc_easy with 24 items each (written here from templates) and the gsm8k fixtures plus
    4 more questions."""
    d = tmp_path / "data"
    d.mkdir()
    things = [
        "bread",
        "tea",
        "a bike",
        "a lamp",
        "shoes",
        "a plant",
        "a window",
        "soup",
        "a dog",
        "a car",
        "paint",
        "a book",
    ]
    with open(d / "piqa_validation.jsonl", "w") as f:
        for i in range(24):
            t = things[i % len(things)]
            f.write(
                json.dumps(
                    {
                        "goal": f"Look after {t} ({i}).",
                        "sol1": f"Keep {t} clean and dry.",
                        "sol2": f"Throw {t} into a river number {i}.",
                        "label": i % 2,
                    }
                )
                + "\n"
            )
    with open(d / "arc_easy_test.jsonl", "w") as f:
        for i in range(24):
            f.write(
                json.dumps(
                    {
                        "id": f"arc-{i}",
                        "question": f"Which of these is item {i} about {things[i % 12]}?",
                        "choices": [things[(i + k) % 12] for k in range(3 + i % 2)],
                        "choice_labels": list("ABCD")[: 3 + i % 2],
                        "answer": i % 3,
                        "answer_key": "ABC"[i % 3],
                    }
                )
                + "\n"
            )
    shutil.copy(FIXTURES / "benchmarks" / "gsm8k_fewshot_cot8.jsonl", d)
    with open(d / "gsm8k_test.jsonl", "w") as f:
        f.write((FIXTURES / "benchmarks" / "gsm8k_test.jsonl").read_text())
        for i in range(4):
            f.write(
                json.dumps(
                    {
                        "id": 10 + i,
                        "question": f"Ann has {i + 2} pens and buys {i}. How many now?",
                        "answer": f"#### {2 * i + 2}",
                        "final_answer": str(2 * i + 2),
                        "final_answer_value": 2 * i + 2,
                    }
                )
                + "\n"
            )
    return d


def _sumi(args: list[str], nproc: int = 1, timeout: float = 120, env: dict | None = None, cwd: Path | None = None):
    if nproc == 1:
        cmd = [sys.executable, "-m", "sumi.cli", *args]
    else:
        cmd = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            f"--nproc_per_node={nproc}",
            "--master_addr=127.0.0.1",
            f"--master_port={_free_port()}",
            "-m",
            "sumi.cli",
            *args,
        ]
    proc = subprocess.run(cmd, env=env or ENV, capture_output=True, text=True, timeout=timeout, cwd=cwd)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def _samples(out: Path, task: str) -> list[dict]:
    return [json.loads(line) for line in (out / f"samples_{task}.jsonl").read_text().splitlines()]


def _assert_same_items(a: list[dict], b: list[dict]) -> None:
    """The same records item by item, log-likelihoods to the last bit (an item's NELBO batches
    hold its own canvases only, whatever else its process scores)."""
    assert len(a) == len(b) and a
    assert a == b


def _same_results(results: dict, out_dir: Path) -> dict:
    """A results.json without what legitimately differs between runs: when it was made, where it
    was written, how many processes ran and how long each task took."""
    results = json.loads(json.dumps(results).replace(str(out_dir), "<out>"))
    del results["created"], results["config"]["processes"]
    for r in results["results"].values():
        r.pop("seconds")
        r.pop("seconds_per_item")
    return results


EVAL_ARGS = [
    "eval",
    "--offline",
    "piqa,arc_easy,gsm8k",
    "--limit",
    "20",
    "--limit-gen",
    "4",
    "--model",
    "demo",
    "--num-samples",
    "2",
    "--canvas-length",
    "128",
    "--steps",
    "6",
    "--max-gen-toks",
    "12",
    "--no-progress",
    "--log-samples",
]


@pytest.mark.slow
def test_eval_with_two_processes_equals_one_process_item_by_item(tmp_path):
    data = _data_dir(tmp_path)
    docs = tmp_path / "docs.jsonl"  # the `nelbo` task: `sumi perplexity`'s rolling NELBO
    docs.write_text(
        "".join(
            json.dumps({"text": f"Line {i}: the quick brown fox {'jumps ' * i}over the dog."}) + "\n" for i in range(12)
        )
    )
    args = [*EVAL_ARGS, "--data-dir", str(data), "--nelbo-file", str(docs)]
    args[2] += ",nelbo"
    one, two = tmp_path / "one", tmp_path / "two"
    _sumi([*args, "--output-dir", str(one)])
    _sumi([*args, "--output-dir", str(two)], nproc=2)
    r1, r2 = (json.loads((d / "results.json").read_text()) for d in (one, two))
    assert r2["config"]["processes"] == 2 and r1["config"]["processes"] == 1
    assert r1["results"]["nelbo"]["n"] == 12
    for task in ("piqa", "arc_easy", "gsm8k"):
        assert r1["results"][task]["n"] == (4 if task == "gsm8k" else 20)
        _assert_same_items(_samples(one, task), _samples(two, task))
    # every metric (perplexity, its bootstrap CI, accuracies) and setting to the last bit
    assert _same_results(r1, one) == _same_results(r2, two)
    assert len(list((two / "shards").glob("piqa.*.json"))) == 2  # one shard per process (10 items each)


@pytest.mark.slow
def test_resume_recomputes_only_the_missing_shard(tmp_path):
    """1 process writes 4 shards of 5 items; one is lost; 2 processes resume: 5 items scored again."""
    data = _data_dir(tmp_path)
    out = tmp_path / "out"
    args = [*EVAL_ARGS, "--data-dir", str(data), "--output-dir", str(out), "--shard-size", "5"]
    args[2] = "piqa"
    _sumi(args)
    before = _samples(out, "piqa")
    shards = sorted((out / "shards").glob("piqa.*.json"))
    assert len(shards) == 4
    lost = shards[1]
    lost_keys = set(json.loads(lost.read_text())["records"])
    kept = {p: p.stat().st_mtime_ns for p in shards if p != lost}
    lost.unlink()
    _sumi([*args, "--resume"], nproc=2)
    result = json.loads((out / "results.json").read_text())["results"]["piqa"]
    assert result["settings"]["resumed_items"] == 15 and result["n"] == 20
    assert {p: p.stat().st_mtime_ns for p in kept} == kept  # finished shards untouched
    redone = [p for p in (out / "shards").glob("piqa.*.json") if p not in kept]
    assert sum(len(json.loads(p.read_text())["records"]) for p in redone) == 5
    assert set().union(*(json.loads(p.read_text())["records"] for p in redone)) == lost_keys
    _assert_same_items(before, _samples(out, "piqa"))


@pytest.mark.slow
def test_generate_prompts_file_with_two_processes_writes_the_same_jsonl(tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("def f(x):\nThe king\nimport os\nclass A:\nHAMLET.\n")
    args = [
        "generate",
        "--prompts-file",
        str(prompts),
        "--model",
        "demo",
        "--steps",
        "6",
        "-n",
        "10",
        "--canvas-length",
        "48",
        "--seed",
        "3",
        "--format",
        "jsonl",
        "--no-progress",
    ]
    a = [json.loads(x) for x in _sumi(args).stdout.splitlines()]
    b = [json.loads(x) for x in _sumi(args, nproc=2).stdout.splitlines()]

    def same(r):  # the time and forwards are those of the batch that ran the row
        return {k: v for k, v in r.items() if k not in ("seconds", "num_forwards")}

    assert [same(r) for r in a] == [same(r) for r in b] and len(a) == 5
    assert [r["index"] for r in b] == list(range(5))
    assert len({r["settings"]["seed"] for r in a}) == 5 and all(r["settings"]["run_seed"] == 3 for r in a)


@pytest.mark.slow
def test_a_killed_rank_ends_the_run_with_an_error_within_seconds(tmp_path):
    """Two processes started by hand (any launcher: RANK, WORLD_SIZE, MASTER_ADDR/PORT); rank 1 is
    killed once both are scoring; rank 0, waiting for it, must exit non-zero within seconds."""
    data = _data_dir(tmp_path)
    out = tmp_path / "out"
    port = _free_port()
    args = [
        sys.executable,
        "-m",
        "sumi.cli",
        "eval",
        "--offline",
        "piqa",
        "--limit",
        "24",
        "--model",
        "demo",
        "--num-samples",
        "16",
        "--canvas-length",
        "128",
        "--no-progress",
        "--data-dir",
        str(data),
        "--output-dir",
        str(out),
        "--shard-size",
        "1",
    ]
    procs = []
    for rank in (0, 1):
        env = dict(
            ENV,
            RANK=str(rank),
            WORLD_SIZE="2",
            LOCAL_RANK=str(rank),
            MASTER_ADDR="127.0.0.1",
            MASTER_PORT=str(port),
            SUMI_DEAD_AFTER_S="4",
            SUMI_HEARTBEAT_S="0.2",
        )
        procs.append(subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    try:
        deadline = time.monotonic() + 90
        while len(list((out / "shards").glob("piqa.*.json"))) < 2:  # both ranks are mid-task
            assert time.monotonic() < deadline and procs[0].poll() is None, "the run did not start"
            time.sleep(0.1)
        procs[1].send_signal(signal.SIGKILL)
        killed = time.monotonic()
        rc = procs[0].wait(timeout=30)
        waited = time.monotonic() - killed
        err = procs[0].stderr.read()
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert rc != 0
    assert waited < 20, f"rank 0 took {waited:.1f} s to notice"
    assert "rank 1 of 2 stopped responding" in err and "Traceback" not in err


# ----------------------------------------------------------------------------- analyze: row blocks
def test_concat_records_of_row_blocks_equals_the_whole_batch_recording():
    import torch

    from sumi import SumiConfig, SumiForMaskGeneration
    from sumi.analysis.trajectory_io import concat_records, record_generation

    torch.manual_seed(0)
    model = SumiForMaskGeneration(SumiConfig.from_preset("sumi-tiny")).eval()
    ids = torch.tensor([[0, 0, 5, 6], [0, 7, 8, 9], [3, 4, 5, 6], [0, 0, 0, 9]])
    mask = (torch.arange(4) >= torch.tensor([[2], [1], [0], [3]])).long()
    kw = dict(
        max_new_tokens=6,
        num_denoising_steps=5,
        canvas_length=16,
        sampler="adaptive",
        temperature=0.5,
        tokens_per_step=2,
    )
    seeds = [11, 12, 13, 14]
    _, whole = record_generation(model, ids, mask, seed=seeds, **kw)
    parts = [record_generation(model, ids[a:b], mask[a:b], seed=seeds[a:b], **kw)[1] for a, b in ((0, 1), (1, 4))]
    merged = concat_records(parts)
    assert torch.equal(merged.trajectory.canvases(), whole.trajectory.canvases())
    assert torch.equal(merged.trajectory.free, whole.trajectory.free)
    for k in range(whole.trajectory.num_steps):
        assert torch.equal(merged.trajectory.top1_prob[k], whole.trajectory.top1_prob[k])
        assert torch.equal(merged.trajectory.selected[k], whole.trajectory.selected[k])
    assert merged.metadata == whole.metadata


@pytest.mark.slow
def test_analyze_with_two_processes_equals_one_process(tmp_path):
    args = [
        "analyze",
        "--model",
        "demo",
        "--steps",
        "6",
        "--max-new-tokens",
        "10",
        "--canvas-length",
        "48",
        "--samples",
        "2",
        "--budgets",
        "1,2",
        "--no-plots",
        "--json",
        "The king",
        "def f(x):",
        "import os",
    ]
    one = json.loads(_sumi([*args, "--out", str(tmp_path / "one")]).stdout)
    two = json.loads(_sumi([*args, "--out", str(tmp_path / "two")], nproc=2).stdout)

    def strip(x):  # where the files went differs
        if isinstance(x, dict):
            return {k: strip(v) for k, v in x.items() if k not in ("files", "trajectory_file")}
        return [strip(v) for v in x] if isinstance(x, list) else x

    assert strip(one) == strip(two)
    assert len(one["analyses"][0]["metadata"]["completion_ids"]) == 6  # 3 prompts x 2 samples


@pytest.mark.slow
def test_lm_eval_tasks_with_two_processes_equal_one_process(tmp_path):
    """lm-eval's own sharding by SumiLM.rank / world_size, gathered on rank 0."""
    pytest.importorskip("lm_eval")
    tasks = tmp_path / "tasks"
    shutil.copytree(FIXTURES / "lm_eval_tasks", tasks)
    env = dict(ENV, HF_DATASETS_CACHE=str(tmp_path / "hf"))
    lm = [
        "eval",
        "--tasks",
        "sumi_fixture_mc,sumi_fixture_rolling",
        "--include-path",
        str(tasks),
        "--model",
        "demo",
        "--num-samples",
        "2",
        "--canvas-length",
        "64",
        "--no-progress",
    ]
    r = []
    for n in (1, 2):
        out = tmp_path / f"lm{n}"
        # the task YAMLs name their data files relative to the working directory
        _sumi([*lm, "--output-dir", str(out)], nproc=n, env=env, cwd=tasks)
        r.append(json.loads((out / "results.json").read_text())["results"])
    for task in ("sumi_fixture_mc", "sumi_fixture_rolling"):
        assert r[0][task]["n"] == r[1][task]["n"]
        assert r[0][task]["metrics"] == r[1][task]["metrics"]  # to the last bit


# ----------------------------------------------------------------------------- command-line errors
@pytest.mark.parametrize(
    "args, needle",
    [
        (["eval", "--offline", "piqa", "--resume"], "argument --resume: needs --output-dir"),
        (["eval", "--tasks", "hellaswag", "--resume", "--output-dir", "x"], "argument --resume: applies to --offline"),
    ],
)
def test_resume_needs_an_output_folder_and_the_offline_backend(args, needle, capsys, tmp_path):
    pytest.importorskip("lm_eval")
    from sumi.cli import main

    data = ["--data-dir", str(FIXTURES / "benchmarks")] if "--offline" in args else []
    assert main([*args, *data, "--model", "sumi-tiny"]) == 2
    err = capsys.readouterr().err
    assert needle in err and len(err.strip().splitlines()) == 1


def test_a_broken_launch_environment_is_a_one_line_error(monkeypatch, capsys):
    from sumi.cli import main

    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "two")
    assert main(["perplexity", __file__, "--model", "sumi-tiny"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "sumi: error: environment variable WORLD_SIZE must be an integer >= 1, got 'two'"


def test_notes_are_said_once_by_rank_zero(monkeypatch, capsys):
    from sumi.cli.common import note

    monkeypatch.setenv("RANK", "1")
    note("hello")
    monkeypatch.setenv("RANK", "0")
    note("world")
    assert capsys.readouterr().err == "sumi: world\n"
