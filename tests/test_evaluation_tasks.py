"""Offline benchmark loaders, prompt formats and answer extraction (no model needed)."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import shared_path

from sumi.evaluation.tasks import (
    MBPP_EXEMPLAR_TESTS,
    TASKS,
    extract_gsm8k_answer,
    gsm8k_correct,
    gsm8k_prefix,
    hellaswag_preprocess,
    load_jsonl,
    load_task,
    normalize_number,
    resolve_task_names,
    select,
)

FIXTURES = Path(__file__).parent / "fixtures" / "eval" / "benchmarks"


@pytest.mark.parametrize(
    "text,strict,flexible",
    [
        ("She has 5 + 4 = 9 apples. So the answer is 9.", "9", "9"),
        ("Total: $1,450,000. So the answer is $1,450,000.", "1450000", "1450000"),
        ("It drops 3 degrees, to -7. The answer is -7", "-7", "-7"),
        ("So the answer is 18.00.\n", "18", "18"),
        ("We get 12 then 15 cookies in the end", None, "15"),
        ("The answer is: 42", "42", "42"),
        ("the answer is 2.5 hours", "2.5", "2.5"),
        ("no digits at all", None, None),
        ("So the answer is 6. Question: 7 more", "6", "7"),  # flexible takes the last number; cut at stop first
    ],
)
def test_gsm8k_answer_extraction(text, strict, flexible):
    assert extract_gsm8k_answer(text) == (strict, flexible)


def test_gsm8k_scoring_normalises_both_sides():
    assert normalize_number(" $1,450. ") == "1450"
    assert normalize_number("3.50") == "3.5"
    assert gsm8k_correct("2400", "2,400") and gsm8k_correct("-3", "-3")
    assert not gsm8k_correct(None, "3") and not gsm8k_correct("4", "3")


def test_every_task_loads_from_the_fixtures():
    sizes = {}
    for name in TASKS:
        items = load_task(name, FIXTURES)
        assert items, name
        sizes[name] = len(items)
    assert sizes["humaneval"] == 3 and sizes["mmlu"] == 2


def test_multiple_choice_formats():
    mmlu = load_task("mmlu", FIXTURES)[0]
    ctx = mmlu.contexts[0]
    assert ctx.startswith(
        "The following are multiple choice questions (with answers) about elementary mathematics.\n\n"
    )
    assert ctx.count("\nAnswer:") == 6 and ctx.endswith("What is 4 + 3?\nA. 6\nB. 7\nC. 8\nD. 43\nAnswer:")
    assert "What is 1 + 1?\nA. 1\nB. 2\nC. 3\nD. 4\nAnswer: B\n\n" in ctx
    assert mmlu.continuations == [" A", " B", " C", " D"] and mmlu.gold == 1
    assert len(load_task("mmlu", FIXTURES, num_fewshot=0)[0].contexts[0]) < len(ctx)

    hs = load_task("hellaswag", FIXTURES)[0]
    assert hs.contexts == ["Making tea: A person fills a kettle with water. They"]
    assert hs.continuations[0] == " put the kettle on the stove. and wait."
    assert hellaswag_preprocess(" a [header] b ") == "a b"  # lm-eval: markers dropped, one "  " pass

    piqa = load_task("piqa", FIXTURES)[1]
    assert piqa.pairs() == [
        ("Question: Cool down a hot drink.\nAnswer:", " Put it in the oven."),
        ("Question: Cool down a hot drink.\nAnswer:", " Let it sit for a few minutes."),
    ]
    arc = load_task("arc_easy", FIXTURES)[1]
    assert len(arc.continuations) == 3 and arc.gold == 1

    wino = load_task("winogrande", FIXTURES)[0]
    assert wino.pairs() == [
        ("The trophy did not fit in the box because the trophy", " was too big."),
        ("The trophy did not fit in the box because the box", " was too big."),
    ]
    assert wino.gold == 0 and load_task("winogrande", FIXTURES)[1].gold == 1
    with pytest.raises(ValueError, match="0-shot"):
        load_task("piqa", FIXTURES, num_fewshot=2)


def test_generation_formats():
    g = load_task("gsm8k", FIXTURES)[1]
    assert g.prompt.count("Question: ") == 6 and g.prompt.endswith("How many dollars does it make in 2 days?\nAnswer:")
    assert g.gold == "2,400" and g.until == ["Question:", "\n\n"]
    assert load_task("gsm8k", FIXTURES, num_fewshot=2)[0].prompt.count("Question: ") == 3
    with pytest.raises(ValueError):
        load_task("gsm8k", FIXTURES, num_fewshot=8)  # the fixture has 5 exemplars
    he = load_task("humaneval", FIXTURES)[0]
    assert he.prompt.startswith("def add(") and "\ndef" in he.until
    mb = load_task("mbpp", FIXTURES)[0]
    assert mb.prompt.endswith(
        "Write a function to square a number.\nYour code should pass these tests:\n"
        "assert square(3) == 9\nassert square(-2) == 4\nassert square(0) == 0\n```python\n"
    )
    assert mb.prompt.count("```python\n") == 4 and mb.until == ["```"]


def test_select_spreads_items_evenly():
    items = list(range(10))
    assert select(items, None) == items and select(items, 20) == items
    assert select(items, 3) == [0, 3, 6]
    assert select(items, 1) == [0]


def test_task_names():
    assert resolve_task_names("all") == list(TASKS)
    assert resolve_task_names("gsm8k, mmlu,gsm8k") == ["gsm8k", "mmlu"]
    assert resolve_task_names("nelbo") == ["nelbo"]
    with pytest.raises(ValueError, match="unknown offline task"):
        resolve_task_names("mmlu,boolq")


def test_loader_errors_name_the_file(tmp_path):
    (tmp_path / "piqa_validation.jsonl").write_text('{"goal": "x", "sol1": "a", "sol2": "b", "label": 0}\n{oops\n')
    with pytest.raises(ValueError, match="piqa_validation.jsonl:2"):
        load_task("piqa", tmp_path)
    with pytest.raises(ValueError, match="not found"):
        load_task("mmlu", tmp_path)


# ----------------------------------------------------------------------------- the real files
README_ROWS = {
    "mmlu_test.jsonl": 14042,
    "mmlu_dev.jsonl": 285,
    "mmlu_validation.jsonl": 1531,
    "hellaswag_validation.jsonl": 10042,
    "piqa_validation.jsonl": 1838,
    "arc_easy_validation.jsonl": 570,
    "arc_easy_test.jsonl": 2376,
    "arc_challenge_validation.jsonl": 299,
    "arc_challenge_test.jsonl": 1172,
    "winogrande_validation.jsonl": 1267,
    "gsm8k_test.jsonl": 1319,
    "gsm8k_fewshot_cot8.jsonl": 8,
    "humaneval.jsonl": 164,
    "mbpp_test.jsonl": 500,
    "mbpp_fewshot_3shot.jsonl": 3,
}
TASK_SIZES = {
    "mmlu": 14042,
    "hellaswag": 10042,
    "piqa": 1838,
    "arc_easy": 2376,
    "arc_challenge": 1172,
    "winogrande": 1267,
    "gsm8k": 1319,
    "humaneval": 164,
    "mbpp": 500,
}


def test_loaders_parse_every_real_benchmark_file():
    """Fails in CI (CI=true) when ../shared is missing; skips elsewhere."""
    data = shared_path("data", "benchmarks")
    for name, rows in README_ROWS.items():
        assert len(load_jsonl(data / name)) == rows, name
    for name, size in TASK_SIZES.items():
        items = load_task(name, data)
        assert len(items) == size, name
        for it in items:
            if hasattr(it, "choices"):
                assert 0 <= it.gold < len(it.continuations) and all(it.continuations), name
            else:
                assert it.prompt and it.until, name
    # the 8-shot CoT prefix built from the exemplars is byte-identical to the OLMES prompt file
    exemplars = load_jsonl(data / "gsm8k_fewshot_cot8.jsonl")
    assert gsm8k_prefix(exemplars, 8) == (data / "gsm8k_fewshot_cot8_prompt.txt").read_text(encoding="utf-8")
    # every gold answer of GSM8K normalises to its integer value
    for row in load_jsonl(data / "gsm8k_test.jsonl"):
        assert normalize_number(row["final_answer"]) == str(row["final_answer_value"])
    # the tests shown with the MBPP exemplars pass against the exemplar code (run in a subprocess)
    for ex in load_jsonl(data / "mbpp_fewshot_3shot.jsonl"):
        name = re.search(r"^def\s+(\w+)", ex["code"], re.M).group(1)
        program = ex["code"] + "\n" + "\n".join(MBPP_EXEMPLAR_TESTS[name]) + "\n"
        assert subprocess.run([sys.executable, "-c", program], capture_output=True, timeout=60).returncode == 0, name
    # the MMLU dev split has the 5 exemplars of every test subject
    subjects = {json.loads(line)["subject"] for line in open(data / "mmlu_test.jsonl", encoding="utf-8")}
    assert len(subjects) == 57
