"""Sandboxed execution of generated code and pass@k (HumanEval / MBPP)."""

import time
from pathlib import Path

import pytest

from sumi.evaluation.execution import pass_at_k, run_program, run_programs
from sumi.evaluation.runner import evaluate_task
from sumi.evaluation.tasks import humaneval_program, load_jsonl, load_task, mbpp_program

FIXTURES = Path(__file__).parent / "fixtures" / "eval" / "benchmarks"


class CannedEvaluator:
    """Stands in for SumiEvaluator: `generate` returns fixed completions (no model)."""

    def __init__(self, completions):
        self.completions = completions
        self.max_length = 2048
        self.options = {"seed": 0}
        self.truncated: dict = {}  # inputs left-truncated to fit the canvas, per kind (none here)

    def generate(self, prompts, until=None, max_gen_toks=None, auto=None, desc=None, costs=None):
        from sumi.evaluation.core import cut_at_stop

        if costs is not None:  # what each answer cost: no forwards here
            costs.extend({"budget": max_gen_toks, "positions": 0} for _ in prompts)
        return [cut_at_stop(self.completions(p), until) for p in prompts]


def test_canonical_humaneval_solutions_pass_and_empty_bodies_fail():
    rows = load_jsonl(FIXTURES / "humaneval.jsonl")
    items = load_task("humaneval", FIXTURES)
    canonical = run_programs(
        [humaneval_program(it.meta, r["canonical_solution"]) for it, r in zip(items, rows)], timeout=20
    )
    assert [r.status for r in canonical] == ["passed"] * 3
    empty = run_programs([humaneval_program(it.meta, "") for it in items], timeout=20)
    stub = run_programs([humaneval_program(it.meta, "    pass\n") for it in items], timeout=20)
    assert not any(r.passed for r in empty + stub)
    assert all("AssertionError" in r.stderr or "TypeError" in r.stderr for r in empty)


def test_humaneval_pass_at_1_through_the_runner():
    solutions = {r["prompt"]: r["canonical_solution"] for r in load_jsonl(FIXTURES / "humaneval.jsonl")}
    # a completion followed by more text: the task's stop strings ("\ndef", ...) must cut it
    good = CannedEvaluator(lambda p: solutions[p] + "\n\ndef unrelated():\n    raise SystemExit(1)\n")
    r = evaluate_task(good, "humaneval", FIXTURES, allow_code_execution=True)
    assert r["metrics"]["pass@1"] == 1.0 and r["n"] == 3
    bad = CannedEvaluator(lambda p: "")
    assert evaluate_task(bad, "humaneval", FIXTURES, allow_code_execution=True)["metrics"]["pass@1"] == 0.0
    # without the opt-in nothing runs
    r = evaluate_task(good, "humaneval", FIXTURES, allow_code_execution=False)
    assert r["metrics"]["pass@1"] is None and "not executed" in r["metrics"]["note"]
    assert r["samples"][0]["completion"] == "    return a + b\n\n"  # cut before "\ndef"


def test_mbpp_reference_code_passes_through_the_runner():
    refs = {r["text"]: r["code"] for r in load_jsonl(FIXTURES / "mbpp_test.jsonl")}

    def complete(prompt):
        text = prompt.rsplit("\nYour code should pass these tests:", 1)[0].rsplit("\n\n", 1)[-1]
        return refs[text] + "\n```\n\nWrite a function that never runs"

    r = evaluate_task(CannedEvaluator(complete), "mbpp", FIXTURES, allow_code_execution=True)
    assert r["metrics"]["pass@1"] == 1.0
    item = load_task("mbpp", FIXTURES)[0]
    assert not run_program(mbpp_program(item.meta, "def square(x):\n    return x + x\n")).passed


def test_timeouts_and_limits():
    start = time.perf_counter()
    r = run_program("while True:\n    pass\n", timeout=1.0)
    assert r.status == "timed out" and not r.passed and time.perf_counter() - start < 10
    r = run_program("x = bytearray(1024 * 1024 * 1024)\n", timeout=10, memory_mb=256)
    assert not r.passed and "MemoryError" in r.stderr
    r = run_program("import os\nos.system('echo escaped')\n", timeout=10)
    assert not r.passed and "NoneType" in r.stderr  # process creation is disabled by the guard
    r = run_program("import subprocess\nsubprocess.run(['true'])\n", timeout=10)
    assert not r.passed
    assert run_program("import sys\nsys.exit(3)\n").returncode == 3
    assert run_program("print('ok')\n").passed


def test_pass_at_k():
    assert pass_at_k(1, 1, 1) == 1.0 and pass_at_k(1, 0, 1) == 0.0
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3)
    assert pass_at_k(5, 2, 2) == pytest.approx(1 - (3 * 2) / (5 * 4))
    assert pass_at_k(4, 3, 2) == 1.0
    with pytest.raises(ValueError):
        pass_at_k(2, 3, 1)
