"""The synthetic instruction suite that `demo-instruct` is fine-tuned and scored on.

Six tasks, each a user message and one exact answer ({...} is the instance):

| task | user message | answer |
|---|---|---|
| add | ``What is {a} plus {b}?`` (a, b in 0..99) | ``{a+b}`` |
| sort | ``Sort these numbers from smallest to largest: {n1}, {n2}, ...`` (3-6 in 0..99) | sorted, ``, ``-joined |
| upper | ``Write this in capital letters: {text}`` (2-5 lowercase words) | the text upper-cased |
| repeat | ``Repeat exactly: {text}`` (2-8 words) | the text |
| last | ``What is the last word of: {text}`` (2-8 words) | its last word |
| count | ``How many words are in: {text}`` (2-8 words) | the count in digits |

Splits. `HELDOUT_WORD_FRACTION` of `WORDS` (chosen by `derive_seed`, independent of any sampling
seed) never appears in training: split "heldout_words" builds every word-task instance from them
alone. The remaining instances of seen words are split by a hash of the instance's exact text:
`HELDOUT_INSTANCE_FRACTION` go to "heldout", the rest to "train". So the three splits never share
an instance, for any sampling seed; the numeric tasks have no "heldout_words" split.

Split "train_broad" is "train" with a wider vocabulary for the word tasks: each word is, with
probability `BROAD_WORD_FRACTION`, drawn from `lexicon()` (2,400 lowercase whole-word tokens of the
bundled tokenizer, `assets/sft_lexicon.txt`; sometimes two glued together, so that words span
several tokens as many suite words do) instead of the seen words. A model trained on 188 words can
memorise each word's tokens; a few thousand force it to learn to copy and upper-case. Held-out
words (and instances of "heldout") never appear in it either.

Split "train_focus" is "train_broad" leaning on what a small model gets wrong: `FOCUS_WEIGHTS` more
instances of the numeric tasks and counting, and, with probability `FOCUS_HARD_FRACTION`, an instance
from the hard end of the task (a one-digit operand; one-digit numbers or a repeat among those to
sort; 6-8 words to count). One-digit numbers are one token where others are two, so the answer's
length moves with them; uniform draws rarely make them. Held-out instances stay out as above.

Split "train_sort" draws like "train_focus" with `SORT_WEIGHTS`: six sorts per round against one of
each other task, for a model that has the other five and still writes a number twice when sorting.
"""

from __future__ import annotations

import functools
import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .seeding import derive_seed

TASKS = ("add", "sort", "upper", "repeat", "last", "count")
WORD_TASKS = ("upper", "repeat", "last", "count")
SPLITS = ("train", "heldout", "heldout_words", "train_broad", "train_focus", "train_sort")
HELDOUT_WORD_FRACTION = 0.2
HELDOUT_INSTANCE_FRACTION = 0.1
SPLIT_SEED = "sft-suite-v1"  # fixed: the splits must not depend on the sampling seed
BROAD_WORD_FRACTION = 0.5
COMPOUND_FRACTION = 0.25  # of the lexicon draws: two lexicon words glued ("sunlight"-like)
FOCUS_WEIGHTS = {"add": 2, "sort": 3, "upper": 1, "repeat": 1, "last": 1, "count": 2}  # instances per round
SORT_WEIGHTS = {"add": 1, "sort": 6, "upper": 1, "repeat": 1, "last": 1, "count": 1}
SPLIT_WEIGHTS = {"train_focus": FOCUS_WEIGHTS, "train_sort": SORT_WEIGHTS}  # other splits: one of each task
FOCUS_HARD_FRACTION = 0.5  # of the instances of "train_focus" and "train_sort"

# Common short English words (lowercase, letters only).
WORDS = tuple(
    dict.fromkeys(
        """
apple river stone green house light water paper table chair bread music night dream cloud
window garden forest market letter bottle summer winter spring autumn silver golden yellow purple
orange simple happy quiet little strong gentle bright early rapid smooth sweet bitter honest clever
brave proud calm kind cold warm dark small large young old new long short tall round flat sharp
soft hard heavy thin thick wide deep high low fast slow loud clean dirty empty full busy lazy
horse tiger mouse eagle snake whale sheep goat camel zebra rabbit monkey turtle dolphin parrot
spoon knife plate glass cup bowl lamp clock door wall floor roof street bridge tower castle
village city island ocean valley desert mountain hill lake field farm road path train plane
boat ship wheel engine rocket planet moon star sun sky rain snow wind storm fire earth
king queen prince doctor farmer sailor singer driver teacher student friend mother father sister
brother child baby people story song poem word book page line name voice face hand heart
mind idea plan game team class school office money price gift box bag coat shirt shoe hat
ring coin key map card photo pen pencil brush paint color shape number circle square corner
jump run walk swim sing dance read write speak listen think learn teach build break open close
carry throw catch drive climb sleep wake laugh smile cry play work rest cook clean wash
""".split()
    )
)


@dataclass(frozen=True)
class Instance:
    task: str
    user: str
    answer: str

    def messages(self, with_answer: bool = True) -> list[dict[str, str]]:
        msgs = [{"role": "user", "content": self.user}]
        return msgs + [{"role": "assistant", "content": self.answer}] if with_answer else msgs

    def to_json(self) -> dict:
        return {"task": self.task, "messages": self.messages()}


def heldout_words() -> frozenset[str]:
    """The words no training instance uses (a fixed `HELDOUT_WORD_FRACTION` of `WORDS`)."""
    ranked = sorted(WORDS, key=lambda w: derive_seed(SPLIT_SEED, "word", w))
    return frozenset(ranked[: round(len(WORDS) * HELDOUT_WORD_FRACTION)])


@functools.cache
def lexicon() -> tuple[str, ...]:
    """The wider word list of split "train_broad" (`assets/sft_lexicon.txt`), minus held-out words."""
    path = Path(__file__).parent / "assets" / "sft_lexicon.txt"
    held = heldout_words()
    return tuple(w for w in path.read_text(encoding="utf-8").split() if w not in held)


def _broad_picker(seen: list[str]) -> Callable[[random.Random], str]:
    """The word source of "train_broad": a seen suite word, or a lexicon word (sometimes two glued)."""
    lex, held = lexicon(), heldout_words()

    def pick(rng: random.Random) -> str:
        if rng.random() >= BROAD_WORD_FRACTION:
            return rng.choice(seen)
        while True:
            word = rng.choice(lex) + (rng.choice(lex) if rng.random() < COMPOUND_FRACTION else "")
            if word not in held:
                return word

    return pick


def _is_heldout_instance(task: str, user: str) -> bool:
    return derive_seed(SPLIT_SEED, "instance", task, user) % 10_000 < HELDOUT_INSTANCE_FRACTION * 10_000


def _text(rng: random.Random, pick: Callable[[random.Random], str], low: int, high: int) -> str:
    return " ".join(pick(rng) for _ in range(rng.randint(low, high)))


def _number(rng: random.Random, hard: bool) -> int:
    """0-99; from the hard end (`hard`), one digit half the time (uniform draws consume the same randomness)."""
    return rng.randint(0, 9) if hard and rng.random() < 0.5 else rng.randint(0, 99)


def _draw(task: str, rng: random.Random, pick: Callable[[random.Random], str], hard: bool = False) -> Instance:
    """One instance of `task`; `hard` draws from the hard end of the task (split "train_focus")."""
    if task == "add":
        a, b = _number(rng, hard), _number(rng, hard)
        return Instance(task, f"What is {a} plus {b}?", str(a + b))
    if task == "sort":
        nums = [_number(rng, hard) for _ in range(rng.randint(3, 6))]
        if hard and rng.random() < 0.25:
            nums[rng.randrange(len(nums))] = rng.choice(nums)
        return Instance(
            task,
            "Sort these numbers from smallest to largest: " + ", ".join(map(str, nums)),
            ", ".join(map(str, sorted(nums))),
        )
    if task == "upper":
        text = _text(rng, pick, 2, 5)
        return Instance(task, f"Write this in capital letters: {text}", text.upper())
    text = _text(rng, pick, 6 if hard and task == "count" else 2, 8)
    if task == "repeat":
        return Instance(task, f"Repeat exactly: {text}", text)
    if task == "last":
        return Instance(task, f"What is the last word of: {text}", text.split()[-1])
    if task == "count":
        return Instance(task, f"How many words are in: {text}", str(len(text.split())))
    raise ValueError(f"task must be one of {', '.join(TASKS)}, got {task!r}")


def generate_instances(task: str, split: str, n: int, *, seed: int = 0) -> list[Instance]:
    """`n` instances of `task` in `split` (one of `SPLITS`), drawn from
    `random.Random(derive_seed(seed, task, split))`: the same list for the same arguments.
    Instances may repeat within a split (small instance spaces); never across splits."""
    if task not in TASKS:
        raise ValueError(f"task must be one of {', '.join(TASKS)}, got {task!r}")
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    if split == "heldout_words" and task not in WORD_TASKS:
        raise ValueError(f"task {task!r} has no words: split 'heldout_words' exists for {', '.join(WORD_TASKS)}")
    held = heldout_words()
    words = sorted(held) if split == "heldout_words" else [w for w in WORDS if w not in held]
    pick = _broad_picker(words) if split == "train_broad" or split in SPLIT_WEIGHTS else lambda r: r.choice(words)
    want_heldout = split == "heldout"
    rng = random.Random(derive_seed("sft-suite", seed, task, split))
    out: list[Instance] = []
    while len(out) < n:
        hard = split in SPLIT_WEIGHTS and rng.random() < FOCUS_HARD_FRACTION
        inst = _draw(task, rng, pick, hard)
        if split == "heldout_words" or _is_heldout_instance(task, inst.user) == want_heldout:
            out.append(inst)
    return out


def generate_suite(split: str, per_task: int, *, seed: int = 0, tasks: tuple[str, ...] = TASKS) -> list[Instance]:
    """`per_task` instances of each task in `split` (tasks without that split skipped; a split of
    `SPLIT_WEIGHTS` takes its weight times as many), interleaved round by round so that any prefix
    keeps the mix."""
    weights = {t: SPLIT_WEIGHTS.get(split, {}).get(t, 1) for t in tasks}
    lists = {
        t: generate_instances(t, split, per_task * weights[t], seed=seed)
        for t in tasks
        if split != "heldout_words" or t in WORD_TASKS
    }
    return [
        inst
        for i in range(per_task)
        for t, insts in lists.items()
        for inst in insts[i * weights[t] : (i + 1) * weights[t]]
    ]


def write_suite_jsonl(path: str | Path, split: str, per_task: int, *, seed: int = 0) -> Path:
    """Write `generate_suite(split, per_task)` as SFT JSONL (one ``{"task", "messages"}`` per line), atomically."""
    from .atomic import write_text_atomic

    lines = "".join(json.dumps(inst.to_json()) + "\n" for inst in generate_suite(split, per_task, seed=seed))
    return write_text_atomic(path, lines)


def exact_match(prediction: str, answer: str) -> bool:
    """The suite's metric: the decoded answer, stripped of surrounding whitespace, equals the answer."""
    return prediction.strip() == answer


def answer_instances(
    model, tokenizer, instances: list[Instance], *, seed: int = 0, batch_size: int = 32, **generate_kwargs
) -> list[str]:
    """The model's answer to each instance: its user message through the chat template (the
    tokenizer's, else the default) and ``model.generate`` (the model's generation config,
    overridden by `generate_kwargs`; row i seeded with ``seed + i``), as
    `sumi.chat_template.answer_conversations` answers."""
    from .chat_template import answer_conversations, ensure_chat_template

    return answer_conversations(
        model,
        ensure_chat_template(tokenizer),
        [inst.messages(with_answer=False) for inst in instances],
        seeds=[seed + i for i in range(len(instances))],
        batch_size=batch_size,
        **generate_kwargs,
    )


def score_suite(model, tokenizer, split: str, per_task: int, *, seed: int = 0, **generate_kwargs) -> dict[str, float]:
    """Exact-match accuracy per task on `per_task` instances of `split` (instances drawn with
    `seed`, generation seeded per row from `seed`)."""
    instances = generate_suite(split, per_task, seed=seed)
    answers = answer_instances(model, tokenizer, instances, seed=seed, **generate_kwargs)
    hits: dict[str, list[bool]] = {}
    for inst, got in zip(instances, answers):
        hits.setdefault(inst.task, []).append(exact_match(got, inst.answer))
    return {task: sum(h) / len(h) for task, h in hits.items()}


__all__ = [
    "answer_instances",
    "score_suite",
    "TASKS",
    "WORD_TASKS",
    "SPLITS",
    "WORDS",
    "Instance",
    "heldout_words",
    "lexicon",
    "generate_instances",
    "generate_suite",
    "write_suite_jsonl",
    "exact_match",
]
