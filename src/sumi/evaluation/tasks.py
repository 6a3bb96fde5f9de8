"""Offline benchmark tasks over the JSONL copies described in `../shared/data/benchmarks/README.md`.

Each task turns the rows of its file(s) into *items*: multiple-choice items (one context per
choice, or one shared context, and one continuation per choice, scored by NELBO log-likelihood)
or generation items (a prompt, stop strings, and what is needed to grade the output). The prompt
formats follow lm-evaluation-harness (MMLU, HellaSwag, PIQA, ARC, WinoGrande) and OLMES (GSM8K
chain-of-thought, MBPP) so that the numbers are comparable to the paper's (spec §9).

Presets (`TASKS`), the paper's settings where the spec states them:
  mmlu        5-shot (the 5 dev exemplars of the subject), acc          test, 14042 items
  hellaswag   0-shot, acc / acc_norm (lm-eval preprocessing)             validation, 10042
  piqa        0-shot, acc / acc_norm                                     validation, 1838
  arc_easy    0-shot, acc / acc_norm                                     test, 2376
  arc_challenge 0-shot, acc / acc_norm                                   test, 1172
  winogrande  0-shot, acc (lm-eval's partial scoring)                    validation, 1267
  gsm8k       5-shot CoT (first 5 of the 8 OLMES exemplars), exact match  test, 1319
  humaneval   0-shot, pass@1                                             164
  mbpp        3-shot (the OLMES exemplars, with their tests), pass@1     test, 500

Chat formatting (`sumi eval --chat`): a generation item is also a conversation (`GenItem.messages`):
each few-shot exemplar a user turn (the question as the plain prompt writes it) and an assistant
turn (its answer), then the question as the last user turn. GSM8K's user turns are
"Question: ..." (the assistant turn replaces the "Answer:" cue), its answers cut at "Question:"
only (a chat answer may hold blank lines); HumanEval asks for the function in a ```python block; MBPP's user turn is the problem
and its tests, an exemplar's answer its code in a ```python block. A code answer is graded on the
code inside its first fenced block (`extract_code`; the whole answer when it has none).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..data.jsonl import iter_json_lines

# ----------------------------------------------------------------------------- data location
DATA_ENV = "SUMI_EVAL_DATA_DIR"


def default_data_dir() -> Path | None:
    """`$SUMI_EVAL_DATA_DIR`, else `../shared/data/benchmarks` next to the working directory or
    next to the repository this package lives in; None when none exists."""
    candidates = []
    if os.environ.get(DATA_ENV):
        candidates.append(Path(os.environ[DATA_ENV]))
    candidates.append(Path.cwd().parent / "shared" / "data" / "benchmarks")
    candidates.append(Path.cwd() / "shared" / "data" / "benchmarks")
    here = Path(__file__).resolve()
    if len(here.parents) > 4:
        candidates.append(here.parents[4] / "shared" / "data" / "benchmarks")  # <repo>/../shared (src layout)
    for c in candidates:
        if c.is_dir():
            return c
    return None


def load_jsonl(path: str | os.PathLike) -> list[dict]:
    """Rows of a JSONL file (blank lines skipped); errors name the file and line."""
    rows = []
    with open(path, encoding="utf-8") as f:
        for n, obj in iter_json_lines(f, str(path)):
            if not isinstance(obj, dict):
                raise ValueError(f"{path}:{n}: expected a JSON object")
            rows.append(obj)
    return rows


def _require(row: dict, keys: tuple[str, ...], where: str) -> None:
    missing = [k for k in keys if k not in row]
    if missing:
        raise ValueError(f"{where}: missing field(s) {missing}")


def _gold(value: Any, num_choices: int, where: str, *, offset: int = 0) -> int:
    """The gold choice index `int(value) - offset`, which must name one of the `num_choices`
    choices (a label out of range would otherwise be scored, silently, as a wrong answer)."""
    try:
        gold = int(value) - offset
    except (TypeError, ValueError):
        raise ValueError(f"{where}: the gold label {value!r} is not an integer") from None
    if not 0 <= gold < num_choices:
        raise ValueError(f"{where}: the gold label {value!r} names no choice (there are {num_choices})")
    return gold


# ----------------------------------------------------------------------------- items
@dataclass
class MCItem:
    """A multiple-choice item: `contexts` (one per choice, or a single shared one), one
    `continuations` entry per choice, `choices` (the text length-normalisation counts) and `gold`."""

    id: Any
    contexts: list[str]
    continuations: list[str]
    choices: list[str]
    gold: int
    meta: dict = field(default_factory=dict)

    def pairs(self) -> list[tuple[str, str]]:
        ctxs = (
            self.contexts if len(self.contexts) == len(self.continuations) else self.contexts * len(self.continuations)
        )
        return list(zip(ctxs, self.continuations))


@dataclass
class GenItem:
    """A generation item: `prompt`, `until` stop strings, `max_gen_toks`, and grading data; as a
    chat (`messages`): the few-shot `shots` as (user, assistant) turns, then the `query` user turn
    (default: the prompt), answers cut at `chat_until` (default: `until`)."""

    id: Any
    prompt: str
    until: list[str]
    max_gen_toks: int
    gold: Any = None
    meta: dict = field(default_factory=dict)
    shots: list[tuple[str, str]] = field(default_factory=list)
    query: str | None = None
    chat_until: list[str] | None = None

    def messages(self) -> list[dict[str, str]]:
        """The item as a conversation: user/assistant turns per exemplar, then the question."""
        turns: list[dict[str, str]] = []
        for user, assistant in self.shots:
            turns += [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]
        return turns + [{"role": "user", "content": self.prompt if self.query is None else self.query}]


@dataclass
class TaskSpec:
    name: str
    kind: str  # "mc", "gen" (GSM8K), "code"
    files: tuple[str, ...]
    num_fewshot: int
    metrics: tuple[str, ...]
    primary: str
    build: Callable[..., list]
    max_gen_toks: int = 0
    description: str = ""


# ----------------------------------------------------------------------------- MMLU
LETTERS = "ABCDEFGHIJ"


def _mmlu_block(row: dict) -> str:
    lines = [row["question"].strip()] + [f"{LETTERS[i]}. {c}" for i, c in enumerate(row["choices"])]
    return "\n".join(lines) + "\nAnswer:"


def _mmlu_shot(row: dict) -> str:
    """An answered exemplar: the question block and its gold letter."""
    answer = LETTERS[_gold(row["answer"], len(row["choices"]), "mmlu_dev.jsonl")]
    return f"{_mmlu_block(row)} {answer}\n\n"


def build_mmlu(data_dir: Path, num_fewshot: int = 5) -> list[MCItem]:
    test = load_jsonl(data_dir / "mmlu_test.jsonl")
    dev = load_jsonl(data_dir / "mmlu_dev.jsonl")
    shots: dict[str, list[dict]] = {}
    for i, r in enumerate(dev):
        _require(r, ("subject", "question", "choices", "answer"), f"mmlu_dev.jsonl row {i + 1}")
        shots.setdefault(r["subject"], []).append(r)
    items = []
    for i, r in enumerate(test):
        _require(r, ("subject", "question", "choices", "answer"), f"mmlu_test.jsonl row {i + 1}")
        subject = r["subject"]
        exemplars = shots.get(subject, [])[:num_fewshot]
        if len(exemplars) < num_fewshot:
            raise ValueError(f"mmlu_dev.jsonl has {len(exemplars)} exemplars for {subject!r}, {num_fewshot} needed")
        head = f"The following are multiple choice questions (with answers) about {subject.replace('_', ' ')}.\n\n"
        shots_text = "".join(_mmlu_shot(e) for e in exemplars)
        letters = [LETTERS[j] for j in range(len(r["choices"]))]
        items.append(
            MCItem(
                i,
                [head + shots_text + _mmlu_block(r)],
                [f" {x}" for x in letters],
                letters,
                _gold(r["answer"], len(letters), f"mmlu_test.jsonl row {i + 1}"),
                {"subject": subject},
            )
        )
    return items


# ----------------------------------------------------------------------------- HellaSwag
def hellaswag_preprocess(text: str) -> str:
    """lm-eval's HellaSwag cleaning: drop the WikiHow `[title]`/`[header]`/`[step]` markers."""
    text = text.strip()
    text = text.replace(" [title]", ". ")
    text = re.sub("\\[.*?\\]", "", text)
    return text.replace("  ", " ")


def build_hellaswag(data_dir: Path, num_fewshot: int = 0) -> list[MCItem]:
    _no_shots("hellaswag", num_fewshot)
    items = []
    for i, r in enumerate(load_jsonl(data_dir / "hellaswag_validation.jsonl")):
        _require(r, ("activity_label", "ctx_a", "ctx_b", "endings", "label"), f"hellaswag row {i + 1}")
        ctx = r["ctx_a"] + " " + r["ctx_b"].capitalize()
        query = hellaswag_preprocess(r["activity_label"] + ": " + ctx)
        choices = [hellaswag_preprocess(e) for e in r["endings"]]
        items.append(
            MCItem(
                r.get("ind", i),
                [query],
                [" " + c for c in choices],
                choices,
                _gold(r["label"], len(choices), f"hellaswag row {i + 1}"),
            )
        )
    return items


# ----------------------------------------------------------------------------- PIQA, ARC
def build_piqa(data_dir: Path, num_fewshot: int = 0) -> list[MCItem]:
    _no_shots("piqa", num_fewshot)
    items = []
    for i, r in enumerate(load_jsonl(data_dir / "piqa_validation.jsonl")):
        _require(r, ("goal", "sol1", "sol2", "label"), f"piqa row {i + 1}")
        choices = [r["sol1"], r["sol2"]]
        items.append(
            MCItem(
                i,
                [f"Question: {r['goal']}\nAnswer:"],
                [" " + c for c in choices],
                choices,
                _gold(r["label"], 2, f"piqa row {i + 1}"),
            )
        )
    return items


def _build_arc(file: str):
    def build(data_dir: Path, num_fewshot: int = 0) -> list[MCItem]:
        _no_shots(file, num_fewshot)
        items = []
        for i, r in enumerate(load_jsonl(data_dir / file)):
            _require(r, ("question", "choices", "answer"), f"{file} row {i + 1}")
            choices = list(r["choices"])
            items.append(
                MCItem(
                    r.get("id", i),
                    [f"Question: {r['question']}\nAnswer:"],
                    [" " + c for c in choices],
                    choices,
                    _gold(r["answer"], len(choices), f"{file} row {i + 1}"),
                )
            )
        return items

    return build


# ----------------------------------------------------------------------------- WinoGrande
def build_winogrande(data_dir: Path, num_fewshot: int = 0) -> list[MCItem]:
    """lm-eval's partial scoring: the contexts differ (the sentence up to `_` with each option
    filled in), the continuation (the rest of the sentence) is shared and scored."""
    _no_shots("winogrande", num_fewshot)
    items = []
    for i, r in enumerate(load_jsonl(data_dir / "winogrande_validation.jsonl")):
        _require(r, ("sentence", "option1", "option2"), f"winogrande row {i + 1}")
        s = r["sentence"]
        k = s.index("_")
        options = [r["option1"], r["option2"]]
        where = f"winogrande row {i + 1}"
        gold = _gold(r["label"], 2, where) if "label" in r else _gold(r["answer"], 2, where, offset=1)
        cont = " " + s[k + 1 :].strip()
        items.append(MCItem(i, [s[:k] + o for o in options], [cont, cont], options, gold))
    return items


def _no_shots(task: str, n: int) -> None:
    if n:
        raise ValueError(f"{task}: only 0-shot is supported offline (no few-shot split in the data files)")


# ----------------------------------------------------------------------------- GSM8K
GSM8K_UNTIL = ["Question:", "\n\n"]
GSM8K_CHAT_UNTIL = ["Question:"]


def gsm8k_shots(exemplars: list[dict], num_fewshot: int) -> list[tuple[str, str]]:
    """The first `num_fewshot` exemplars as (`Question: q`, chain-of-thought answer)."""
    if num_fewshot > len(exemplars):
        raise ValueError(f"gsm8k: {num_fewshot} shots requested, the exemplar file has {len(exemplars)}")
    return [(f"Question: {e['question']}", e["answer"]) for e in exemplars[:num_fewshot]]


def gsm8k_prefix(exemplars: list[dict], num_fewshot: int) -> str:
    """The OLMES chain-of-thought prefix: `Question: q\\nAnswer: a\\n\\n` per exemplar."""
    return "".join(f"{q}\nAnswer: {a}\n\n" for q, a in gsm8k_shots(exemplars, num_fewshot))


def build_gsm8k(data_dir: Path, num_fewshot: int = 5) -> list[GenItem]:
    exemplars = load_jsonl(data_dir / "gsm8k_fewshot_cot8.jsonl")
    shots, prefix = gsm8k_shots(exemplars, num_fewshot), gsm8k_prefix(exemplars, num_fewshot)
    items = []
    for i, r in enumerate(load_jsonl(data_dir / "gsm8k_test.jsonl")):
        _require(r, ("question", "final_answer"), f"gsm8k_test row {i + 1}")
        query = f"Question: {r['question']}"
        items.append(
            GenItem(
                r.get("id", i),
                prefix + query + "\nAnswer:",
                list(GSM8K_UNTIL),
                256,
                gold=str(r["final_answer"]),
                shots=shots,
                query=query,
                chat_until=list(GSM8K_CHAT_UNTIL),
            )
        )
    return items


_NUM = r"-?[$0-9.,]*[0-9]"


def normalize_number(text: str) -> str:
    """Strip `$`, `,`, surrounding space and a trailing `.`; `"1,450.00"` -> `"1450"`, `"$18."` -> `"18"`."""
    s = text.strip().replace(",", "").replace("$", "").rstrip(".").strip()
    try:
        value = float(s)
    except ValueError:
        return s
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def extract_gsm8k_answer(text: str) -> tuple[str | None, str | None]:
    """(strict, flexible) answers from a chain-of-thought completion.

    strict: the number after the last "the answer is" (lm-eval gsm8k_cot's strict-match).
    flexible: the last number in the text (its flexible-extract). Both normalised
    (`normalize_number`); None when absent.
    """
    strict = None
    hits = re.findall(r"[Tt]he answer is:?\s*\$?\s*(" + _NUM + ")", text)
    if hits:
        strict = normalize_number(hits[-1])
    numbers = re.findall(_NUM, text)
    flexible = normalize_number(numbers[-1]) if numbers else None
    return strict, flexible


def gsm8k_correct(prediction: str | None, gold: str) -> bool:
    return prediction is not None and prediction == normalize_number(gold)


# ----------------------------------------------------------------------------- HumanEval
HUMANEVAL_UNTIL = ["\nclass", "\ndef", "\n#", "\nif", "\nprint"]
HUMANEVAL_CHAT_REQUEST = "Complete this Python function. Answer with the whole function in a ```python block.\n\n"


def build_humaneval(data_dir: Path, num_fewshot: int = 0) -> list[GenItem]:
    _no_shots("humaneval", num_fewshot)
    items = []
    for i, r in enumerate(load_jsonl(data_dir / "humaneval.jsonl")):
        _require(r, ("task_id", "prompt", "test", "entry_point"), f"humaneval row {i + 1}")
        items.append(
            GenItem(
                r["task_id"],
                r["prompt"],
                list(HUMANEVAL_UNTIL),
                512,
                meta={k: r[k] for k in ("prompt", "test", "entry_point")},
                query=f"{HUMANEVAL_CHAT_REQUEST}```python\n{r['prompt'].rstrip()}\n```",
                chat_until=[],
            )
        )
    return items


def humaneval_program(meta: dict, completion: str) -> str:
    """What the HumanEval harness executes: prompt + completion + tests + `check(entry_point)`."""
    return meta["prompt"] + completion + "\n" + meta["test"] + "\n" + f"check({meta['entry_point']})\n"


def extract_code(answer: str) -> str:
    """The code of a chat answer: the inside of its first fenced block (```python ... ```, any or no
    language tag; an unclosed block runs to the end), else the whole answer."""
    m = re.search(r"```[^\n`]*\n(.*?)(?:```|\Z)", answer, re.S)
    return m.group(1) if m else answer


def humaneval_chat_program(meta: dict, answer: str) -> str:
    """A chat answer's program: its code after the prompt when it defines the entry point (the
    prompt's stub, a docstring-only function, is valid Python and keeps the prompt's imports),
    else the code as the stub's body (`humaneval_program`)."""
    code = extract_code(answer)
    if re.search(rf"^\s*def\s+{re.escape(meta['entry_point'])}\s*\(", code, re.M):
        code = "\n" + code
    return humaneval_program(meta, code)


# ----------------------------------------------------------------------------- MBPP
MBPP_UNTIL = ["```"]

# Tests shown with the 3 OLMES exemplars (the exemplar file has none): without a test line the
# model cannot know the function name the graders call. Checked against the exemplar code by
# tests/test_evaluation_tasks.py when ../shared is present.
MBPP_EXEMPLAR_TESTS = {
    "is_not_prime": [
        "assert is_not_prime(2) == False",
        "assert is_not_prime(10) == True",
        "assert is_not_prime(35) == True",
    ],
    "find_Rotations": [
        'assert find_Rotations("aaaa") == 1',
        'assert find_Rotations("ab") == 2',
        'assert find_Rotations("abc") == 3',
    ],
    "heap_queue_largest": [
        "assert heap_queue_largest([25, 35, 22, 85, 14, 65, 75, 22, 58], 3) == [85, 75, 65]",
        "assert heap_queue_largest([25, 35, 22, 85, 14, 65, 75, 22, 58], 2) == [85, 75]",
        "assert heap_queue_largest([25, 35, 22, 85, 14, 65, 75, 22, 58], 5) == [85, 75, 65, 58, 35]",
    ],
}


def _function_name(code: str) -> str | None:
    m = re.search(r"^def\s+([A-Za-z_]\w*)\s*\(", code, re.M)
    return m.group(1) if m else None


def mbpp_request(text: str, tests: list[str]) -> str:
    """`text`, then the tests (the user turn of a chat)."""
    shown = "".join(t.strip() + "\n" for t in tests)
    return f"{text.strip()}\nYour code should pass these tests:\n{shown}"


def mbpp_block(text: str, tests: list[str]) -> str:
    """`text`, the tests, then an opened code block (the completion goes after it)."""
    return mbpp_request(text, tests) + "```python\n"


def build_mbpp(data_dir: Path, num_fewshot: int = 3) -> list[GenItem]:
    exemplars = load_jsonl(data_dir / "mbpp_fewshot_3shot.jsonl")
    if num_fewshot > len(exemplars):
        raise ValueError(f"mbpp: {num_fewshot} shots requested, the exemplar file has {len(exemplars)}")
    prefix = ""
    shots = []
    for e in exemplars[:num_fewshot]:
        code = e["code"].replace("\r\n", "\n").strip("\n")
        tests = MBPP_EXEMPLAR_TESTS.get(_function_name(code) or "", [])
        prefix += mbpp_block(e["text"], tests) + code + "\n```\n\n"
        shots.append((mbpp_request(e["text"], tests), f"```python\n{code}\n```"))
    items = []
    for i, r in enumerate(load_jsonl(data_dir / "mbpp_test.jsonl")):
        _require(r, ("task_id", "text", "test_list"), f"mbpp_test row {i + 1}")
        items.append(
            GenItem(
                r["task_id"],
                prefix + mbpp_block(r["text"], r["test_list"]),
                list(MBPP_UNTIL),
                512,
                meta={"test_list": list(r["test_list"]), "test_setup_code": r.get("test_setup_code", "")},
                shots=shots,
                query=mbpp_request(r["text"], r["test_list"]),
                chat_until=[],
            )
        )
    return items


def mbpp_program(meta: dict, completion: str) -> str:
    setup = meta.get("test_setup_code") or ""
    return completion + "\n\n" + setup + "\n" + "\n".join(meta["test_list"]) + "\n"


def mbpp_chat_program(meta: dict, answer: str) -> str:
    """A chat answer's program: the code of its first fenced block (`extract_code`), then the tests."""
    return mbpp_program(meta, extract_code(answer))


# ----------------------------------------------------------------------------- registry
TASKS: dict[str, TaskSpec] = {
    "mmlu": TaskSpec(
        "mmlu", "mc", ("mmlu_test.jsonl", "mmlu_dev.jsonl"), 5, ("acc",), "acc", build_mmlu, description="MMLU (5-shot)"
    ),
    "hellaswag": TaskSpec(
        "hellaswag",
        "mc",
        ("hellaswag_validation.jsonl",),
        0,
        ("acc", "acc_norm"),
        "acc_norm",
        build_hellaswag,
        description="HellaSwag (0-shot)",
    ),
    "piqa": TaskSpec(
        "piqa", "mc", ("piqa_validation.jsonl",), 0, ("acc", "acc_norm"), "acc", build_piqa, description="PIQA (0-shot)"
    ),
    "arc_easy": TaskSpec(
        "arc_easy",
        "mc",
        ("arc_easy_test.jsonl",),
        0,
        ("acc", "acc_norm"),
        "acc",
        _build_arc("arc_easy_test.jsonl"),
        description="ARC-Easy (0-shot, test)",
    ),
    "arc_challenge": TaskSpec(
        "arc_challenge",
        "mc",
        ("arc_challenge_test.jsonl",),
        0,
        ("acc", "acc_norm"),
        "acc_norm",
        _build_arc("arc_challenge_test.jsonl"),
        description="ARC-Challenge (0-shot, test)",
    ),
    "winogrande": TaskSpec(
        "winogrande",
        "mc",
        ("winogrande_validation.jsonl",),
        0,
        ("acc",),
        "acc",
        build_winogrande,
        description="WinoGrande (0-shot)",
    ),
    "gsm8k": TaskSpec(
        "gsm8k",
        "gen",
        ("gsm8k_test.jsonl", "gsm8k_fewshot_cot8.jsonl"),
        5,
        ("exact_match", "exact_match_strict"),
        "exact_match",
        build_gsm8k,
        256,
        description="GSM8K (5-shot CoT)",
    ),
    "humaneval": TaskSpec(
        "humaneval",
        "code",
        ("humaneval.jsonl",),
        0,
        ("pass@1",),
        "pass@1",
        build_humaneval,
        512,
        description="HumanEval (0-shot)",
    ),
    "mbpp": TaskSpec(
        "mbpp",
        "code",
        ("mbpp_test.jsonl", "mbpp_fewshot_3shot.jsonl"),
        3,
        ("pass@1",),
        "pass@1",
        build_mbpp,
        512,
        description="MBPP (3-shot)",
    ),
}
TASK_ORDER = tuple(TASKS)


GENERATION_TASKS = tuple(n for n in TASK_ORDER if TASKS[n].kind != "mc")


def resolve_task_names(spec: str, *, chat: bool = False) -> list[str]:
    """`"all"`, or a comma-separated list of `TASKS` names (and `nelbo`). With `chat` (chat
    formatting, which only generation tasks have), "all" means the generation tasks and any other
    task is an error."""
    names = []
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        if part == "all":
            names += [n for n in (GENERATION_TASKS if chat else TASK_ORDER) if n not in names]
        elif part in TASKS or part == "nelbo":
            if chat and part not in GENERATION_TASKS:
                raise ValueError(
                    f"task {part!r} has no chat format: chat formatting applies to the generation tasks "
                    f"({', '.join(GENERATION_TASKS)})"
                )
            if part not in names:
                names.append(part)
        else:
            raise ValueError(f"unknown offline task {part!r}; choose from all, {', '.join(TASK_ORDER)}, nelbo")
    if not names:
        raise ValueError("no task given")
    return names


def load_task(name: str, data_dir: str | os.PathLike, num_fewshot: int | None = None) -> list:
    spec = TASKS[name]
    data_dir = Path(data_dir)
    missing = [f for f in spec.files if not (data_dir / f).is_file()]
    if missing:
        raise ValueError(f"{name}: {', '.join(missing)} not found in {data_dir}")
    return spec.build(data_dir, spec.num_fewshot if num_fewshot is None else num_fewshot)


def select(items: list, limit: int | None) -> list:
    """`limit` items spread evenly over the task (item `i * n // limit`, deterministic), so that a
    smoke run of MMLU sees many subjects rather than only the first one."""
    if limit is None or limit >= len(items):
        return list(items)
    if limit <= 0:
        return []
    n = len(items)
    return [items[(i * n) // limit] for i in range(limit)]


__all__ = [
    "TASKS",
    "TASK_ORDER",
    "GENERATION_TASKS",
    "TaskSpec",
    "MCItem",
    "GenItem",
    "default_data_dir",
    "load_jsonl",
    "load_task",
    "resolve_task_names",
    "select",
    "hellaswag_preprocess",
    "gsm8k_prefix",
    "gsm8k_shots",
    "extract_gsm8k_answer",
    "normalize_number",
    "gsm8k_correct",
    "humaneval_program",
    "humaneval_chat_program",
    "mbpp_program",
    "mbpp_chat_program",
    "mbpp_block",
    "mbpp_request",
    "extract_code",
    "MBPP_EXEMPLAR_TESTS",
    "GSM8K_UNTIL",
    "GSM8K_CHAT_UNTIL",
    "HUMANEVAL_CHAT_REQUEST",
    "HUMANEVAL_UNTIL",
    "MBPP_UNTIL",
]
