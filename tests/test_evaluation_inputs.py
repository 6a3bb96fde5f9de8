"""Evaluation inputs that would silently spoil a score are rejected up front, naming the culprit:
out-of-range gold labels, a zero code timeout, unknown lm-eval tasks (issue 14 items 5, 8)."""

import json
import shutil
from pathlib import Path

import pytest

from sumi.evaluation.runner import canvas_study, run_offline
from sumi.evaluation.tasks import load_task

FIXTURES = Path(__file__).parent / "fixtures" / "eval" / "benchmarks"


def _with_row(tmp_path, file, row_index, **changes):
    data = tmp_path / "bench"
    if not data.exists():
        shutil.copytree(FIXTURES, data)
    path = data / file
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    rows[row_index].update(changes)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return data


@pytest.mark.parametrize(
    "task,file,field,value,where",
    [
        ("piqa", "piqa_validation.jsonl", "label", 2, "piqa row 2"),
        ("piqa", "piqa_validation.jsonl", "label", -1, "piqa row 2"),
        ("hellaswag", "hellaswag_validation.jsonl", "label", 4, "hellaswag row 2"),
        ("arc_easy", "arc_easy_test.jsonl", "answer", 9, "arc_easy_test.jsonl row 2"),
        ("winogrande", "winogrande_validation.jsonl", "label", 2, "winogrande row 2"),
        ("mmlu", "mmlu_test.jsonl", "answer", 4, "mmlu_test.jsonl row 2"),
        ("mmlu", "mmlu_dev.jsonl", "answer", 7, "mmlu_dev.jsonl"),
    ],
)
def test_out_of_range_gold_label_is_rejected(tmp_path, task, file, field, value, where):
    assert load_task(task, FIXTURES)  # the fixtures themselves are fine
    data = _with_row(tmp_path, file, 1, **{field: value})
    with pytest.raises(ValueError, match=rf"{where}: the gold label {value!r} names no choice"):
        load_task(task, data)


def test_non_integer_gold_label_is_rejected(tmp_path):
    data = _with_row(tmp_path, "piqa_validation.jsonl", 0, label="first")
    with pytest.raises(ValueError, match=r"piqa row 1: the gold label 'first' is not an integer"):
        load_task("piqa", data)


class NeverCalled:
    """An evaluator that fails the test if any task gets as far as using it."""

    options = {"seed": 0, "canvas_length": 64}
    max_length = 64

    def __getattr__(self, name):
        raise AssertionError(f"the evaluator was used ({name}) although the options were invalid")

    def set(self, **kw):
        pass


@pytest.mark.parametrize(
    "kw,match",
    [
        ({"code_timeout": 0}, "timeout must be"),
        ({"code_timeout": float("nan")}, "timeout must be"),
        ({"code_memory_mb": 0}, "memory limit"),
    ],
)
def test_bad_code_limits_are_rejected_before_any_task(kw, match):
    with pytest.raises(ValueError, match=match):
        run_offline(NeverCalled(), ["piqa", "humaneval"], FIXTURES, allow_code_execution=True, **kw)
    with pytest.raises(ValueError, match=match):
        canvas_study(NeverCalled(), ["humaneval"], [32], FIXTURES, allow_code_execution=True, **kw)


@pytest.mark.slow
def test_unknown_lm_eval_task_names_it_with_close_matches():
    pytest.importorskip("lm_eval")
    from sumi.evaluation.harness import task_manager_for

    with pytest.raises(ValueError, match=r"unknown lm-eval task\(s\): 'hellaswg' \(did you mean hellaswag"):
        task_manager_for(["arc_easy", "hellaswg"])
