"""What every `sumi` command shares: the input-error type, argument types, logging set-up, model
loading, prompt reading and the sampler options.

Imports no command module, so any command (here or in another package) can import it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..diffusion import SCHEDULES
from ..formatting import format_bytes
from ..generation_sumi import GENERATION_DEFAULTS, SAMPLERS

PROG = "sumi"


class CLIError(Exception):
    """An input error, reported as one line `sumi: error: ...` with exit status 2."""


def note(message: str) -> None:
    """A one-line message to the user on stderr, `sumi: <message>`; said once in a launched run
    (by rank 0), not once per process."""
    if os.environ.get("RANK", "0") not in ("0", ""):
        return
    print(f"{PROG}: {message}", file=sys.stderr)


# ----------------------------------------------------------------------------- argument types
def _int_type(minimum: int, what: str) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}")
        return value

    return parse


positive_int = _int_type(1, "a positive integer")
nonneg_int = _int_type(0, "an integer >= 0")


def finite_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def nonneg_float(text: str) -> float:
    value = finite_float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {text!r}")
    return value


def unit_interval(text: str) -> float:
    value = finite_float(text)
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {text!r}")
    return value


def _budget_type(minimum: int, what: str) -> Callable[[str], int | str]:
    def parse(text: str) -> int | str:
        if text.strip().lower() == "auto":
            return "auto"
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {what} or 'auto', got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be {what} or 'auto', got {text!r}")
        return value

    return parse


# an answer budget, or `auto` (the canvas sizes itself): `--max-new-tokens`, `--max-gen-toks`
budget_or_auto = _budget_type(0, "an integer >= 0")
positive_budget_or_auto = _budget_type(1, "a positive integer")


def seed_list(text: str) -> int | list[int]:
    """`42`, or `1,2,3` (one seed per prompt)."""
    parts = [p.strip() for p in text.split(",")]
    try:
        seeds = [int(p) for p in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be an integer or a comma-separated list of integers, got {text!r}"
        ) from None
    if any(s < 0 for s in seeds):
        raise argparse.ArgumentTypeError(f"seeds must be >= 0, got {text!r}")
    return seeds[0] if len(seeds) == 1 else seeds


def frozen_pair(text: str) -> tuple[int, int]:
    """`POS:ID`."""
    try:
        pos, tok = (int(p) for p in text.split(":"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be POS:ID (two integers), got {text!r}") from None
    if pos < 0 or tok < 0:
        raise argparse.ArgumentTypeError(f"POS and ID must be >= 0, got {text!r}")
    return pos, tok


# ----------------------------------------------------------------------------- logging
_LEVELS = {-2: logging.CRITICAL + 1, -1: logging.ERROR, 0: logging.WARNING, 1: logging.INFO, 2: logging.DEBUG}


def add_verbosity_args(parser: argparse.ArgumentParser, *, default: Any = 0) -> None:
    """`-v/--verbose` and `-q/--quiet`, each repeatable; `verbosity(args)` combines them. Commands
    add them with `default=argparse.SUPPRESS` so that `sumi -v generate` is not reset by the command."""
    parser.add_argument(
        "-v", "--verbose", action="count", default=default, help="more log messages: -v info, -vv debug"
    )
    parser.add_argument(
        "-q", "--quiet", action="count", default=default, help="fewer log messages: -q errors only, -qq none"
    )


def verbosity(args: argparse.Namespace) -> int:
    return getattr(args, "verbose", 0) - getattr(args, "quiet", 0)


class _StderrHandler(logging.StreamHandler):
    """Writes to the current `sys.stderr` (tests and callers swap it after set-up), and leaves out
    records that a handler of their own `sumi.*` logger already printed (the trainer's progress lines
    carry their own format)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property  # type: ignore[override]
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass

    def filter(self, record: logging.LogRecord) -> bool:
        logger: logging.Logger | None = logging.getLogger(record.name)
        while logger is not None and logger.name.startswith(f"{PROG}."):
            if logger.handlers:
                return False
            logger = logger.parent if logger.propagate else None
        return super().filter(record)


def configure_logging(verbosity: int = 0) -> Callable[[], None]:
    """Send the `sumi` loggers to stderr, as bare messages, from the level `verbosity` picks:
    -2 nothing, -1 errors, 0 warnings, 1 info, 2 debug. At 0 the loader's notices are left out: the
    commands say themselves what they load (random weights, a byte-level tokenizer). Calling it again
    replaces the previous set-up. Returns a function that restores the set-up before the call (so
    that `main()` called in-process leaves the caller's logging as it found it)."""
    root, loading = logging.getLogger(PROG), logging.getLogger(f"{PROG}.loading")
    before = (root.level, list(root.handlers), loading.level)

    def restore() -> None:
        root.setLevel(before[0])
        root.handlers[:] = before[1]
        loading.setLevel(before[2])

    for handler in [h for h in root.handlers if isinstance(h, _StderrHandler)]:
        root.removeHandler(handler)
    root.addHandler(_StderrHandler())
    root.setLevel(_LEVELS[max(-2, min(2, verbosity))])
    loading.setLevel(logging.ERROR if verbosity == 0 else logging.NOTSET)
    return restore


# ----------------------------------------------------------------------------- model and device
def add_model_arg(parser) -> None:
    """`--model`: what every command that loads a model takes."""
    from ..loading import DEFAULT_MODEL

    parser.add_argument(
        "--model",
        "-m",
        default=DEFAULT_MODEL,
        metavar="PATH_OR_PRESET",
        help=f"a checkpoint folder, a preset name (RANDOM weights) or a Hub id (default: {DEFAULT_MODEL})",
    )


def add_runtime_args(parser) -> None:
    """`--dtype`, `--device` and `--attn` (to a parser or an argument group): how the model is loaded."""
    parser.add_argument(
        "--dtype",
        choices=("float32", "bfloat16", "float16"),
        help="weight dtype (default: the checkpoint's; float32 for presets other than sumi-7b)",
    )
    parser.add_argument(
        "--device", default="auto", help="cpu, cuda, cuda:1, ... (default: cuda when available, else cpu)"
    )
    parser.add_argument(
        "--attn",
        dest="attn_implementation",
        choices=("sumi_native", "sdpa", "eager"),
        help="attention implementation (default: sumi_native where sumi's bf16 CPU kernel applies, "
        "else sdpa; see `sumi info`)",
    )


def resolve_device(name: str):
    """`--device`: "auto" (cuda when available, else cpu) or a torch device name. In a launched run
    (torchrun) a bare `cuda` is this process's GPU, `cuda:LOCAL_RANK`."""
    import torch

    from ..distributed_inference import rank_device

    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError) as e:
        raise CLIError(f"argument --device: invalid device {name!r} ({e})") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise CLIError(f"argument --device: {name!r} requested but CUDA is not available")
    return rank_device(device, launch_peers_env())


def launch_peers_env():
    """`sumi.distributed_inference.launch_env`, with a malformed RANK / WORLD_SIZE reported as an input error."""
    from ..distributed_inference import launch_env

    try:
        return launch_env()
    except ValueError as e:
        raise CLIError(str(e)) from None


def launch_peers():
    """The processes of this run (`sumi.distributed_inference.Peers`; one process when not launched)."""
    from ..distributed_inference import Peers

    env = launch_peers_env()
    try:
        return Peers(env)
    except ValueError as e:
        raise CLIError(str(e)) from None
    except (RuntimeError, OSError) as e:  # the store at MASTER_ADDR:MASTER_PORT did not answer
        raise CLIError(
            f"cannot reach the launcher's store at {os.environ.get('MASTER_ADDR')}:"
            f"{os.environ.get('MASTER_PORT')} ({' '.join(str(e).split())[:200]})"
        ) from None


def model_source(name: str, argument: str = "--model") -> str:
    """`sumi.loading.model_source`, with a bad name reported against `argument`."""
    from ..loading import model_source as source_of

    try:
        return source_of(name)
    except ValueError as e:
        raise CLIError(f"argument {argument}: {e}") from None


def load_model(name: str, *, dtype, device, attn_implementation):
    """`sumi.load`, with a bad name or folder reported as an input error against --model."""
    from ..loading import load

    try:
        return load(name, dtype=dtype, device=device, attn_implementation=attn_implementation)
    except (ValueError, OSError) as e:
        raise CLIError(f"argument --model: {e}") from None


# ----------------------------------------------------------------------------- prompts
# The most --prompts-file reads: far more prompts than one run generates, and a bound on the memory
# an endless input (a pipe that never closes, /dev/zero, a wrong huge file) can take.
MAX_PROMPTS_FILE_BYTES = 128 << 20


def read_prompts_file(path: str, max_bytes: int | None = None) -> list[str]:
    """One prompt per line (blank lines skipped), or JSONL objects with a "prompt" field (chosen when
    the file ends in .jsonl or every non-blank line starts with '{'). `path` "-" is stdin. At most
    `max_bytes` (default MAX_PROMPTS_FILE_BYTES) are read; a longer input is an error."""
    cap = MAX_PROMPTS_FILE_BYTES if max_bytes is None else max_bytes
    try:
        text = _read_capped(path, cap).decode("utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise CLIError(f"argument --prompts-file: cannot read {path!r}: {e}") from e
    lines = [(n, line) for n, line in enumerate(text.splitlines(), 1) if line.strip()]
    is_jsonl = path.endswith(".jsonl") or (lines and all(line.lstrip().startswith("{") for _, line in lines))
    if not is_jsonl:
        return [line for _, line in lines]
    prompts = []
    for n, line in lines:
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise CLIError(f"argument --prompts-file: line {n} of {path!r} is not valid JSON ({e.msg})") from e
        if not isinstance(obj, dict) or not isinstance(obj.get("prompt"), str):
            raise CLIError(f'argument --prompts-file: line {n} of {path!r} has no string "prompt" field')
        prompts.append(obj["prompt"])
    return prompts


def _read_capped(path: str, cap: int) -> bytes:
    """The bytes of `path` ("-" = stdin), read in 1 MiB pieces; CLIError past `cap` bytes."""
    pieces, total = [], 0
    with contextlib.ExitStack() as stack:
        stream = getattr(sys.stdin, "buffer", sys.stdin) if path == "-" else stack.enter_context(open(path, "rb"))
        while piece := stream.read(1 << 20):
            pieces.append(piece.encode("utf-8") if isinstance(piece, str) else piece)
            total += len(pieces[-1])
            if total > cap:
                raise CLIError(
                    f"argument --prompts-file: {path!r} is longer than the cap of {format_bytes(cap)} "
                    f"({cap} bytes) that --prompts-file reads; split it into smaller files"
                )
    return b"".join(pieces)


def parse_ids(text: str, index: int) -> list[int]:
    """Prompt number `index` (0-based) given as token ids, comma or space separated (`--ids`)."""
    try:
        return [int(t) for t in text.replace(",", " ").split()]
    except ValueError:
        raise CLIError(f"argument PROMPT: prompt {index + 1} is not a list of token ids (--ids): {text!r}") from None


# ----------------------------------------------------------------------------- sampler options
@dataclass(frozen=True)
class DefaultRule:
    """A command's default that is a rule rather than a value: shown in the help, the option stays unset."""

    text: str


# generate()'s keyword -> (flags, argparse keywords). Defaults come from `add_sampling_args`: unset
# options stay None, so that generate() resolves them through the model's generation config.
_SAMPLING_ARGS: dict[str, tuple[tuple[str, ...], dict[str, Any]]] = {
    "max_new_tokens": (
        ("--max-new-tokens", "-n"),
        dict(type=nonneg_int, metavar="N", help="tokens to write after each prompt"),
    ),
    "num_denoising_steps": (
        ("--steps", "--num-denoising-steps"),
        dict(type=positive_int, metavar="N", help="denoising steps, one forward pass each"),
    ),
    "sampler": (("--sampler",), dict(choices=SAMPLERS, help="how a step moves the canvas")),
    "schedule": (("--schedule",), dict(choices=SCHEDULES, help="noise schedule of the ancestral sampler")),
    "temperature": (
        ("--temperature", "-t"),
        dict(type=nonneg_float, metavar="T", help="softmax temperature of the denoiser; 0 = argmax"),
    ),
    "tokens_per_step": (
        ("--tokens-per-step",),
        dict(type=positive_int, metavar="K", help="positions the adaptive sampler rewrites per step"),
    ),
    "top_k": (("--top-k",), dict(type=positive_int, metavar="K", help="sample only among the K most likely tokens")),
    "top_p": (
        ("--top-p",),
        dict(type=unit_interval, metavar="P", help="nucleus sampling: keep the top tokens holding probability mass P"),
    ),
    "min_p": (("--min-p",), dict(type=unit_interval, metavar="P", help="keep tokens with probability >= P * p_max")),
    "min_log_snr": (("--min-log-snr",), dict(type=finite_float, metavar="L", help="lowest log-SNR of the schedule")),
    "max_log_snr": (("--max-log-snr",), dict(type=finite_float, metavar="L", help="highest log-SNR of the schedule")),
    "early_stop_patience": (
        ("--early-stop",),
        dict(
            type=positive_int,
            metavar="PATIENCE",
            help="a row stops after PATIENCE consecutive steps that change nothing in it (exact for greedy and "
            "adaptive at temperature 0 with PATIENCE 1; a heuristic for ancestral)",
        ),
    ),
    "stop_on_cycle": (
        ("--stop-on-cycle",),
        dict(
            action="store_const",
            const=True,
            help="greedy / adaptive at temperature 0: a row stops once its canvas repeats a recent state, keeping "
            "the canvas the remaining steps would end on (exact, fewer forwards)",
        ),
    ),
    "corrector_steps": (
        ("--corrector-steps",),
        dict(
            type=nonneg_int,
            metavar="C",
            help="predictor_corrector: corrector forwards after each step (re-noise one step back, denoise again)",
        ),
    ),
    "greedy_tail": (
        ("--greedy-tail",),
        dict(type=nonneg_int, metavar="G", help="the last G forwards take the argmax (ancestral-type samplers)"),
    ),
    "entropy_bound": (
        ("--entropy-bound",),
        dict(
            type=nonneg_float,
            metavar="H",
            help="entropy_bounded: positions with predicted entropy under H nats take the argmax, the rest are redrawn",
        ),
    ),
    "seed": (("--seed",), dict(type=seed_list, metavar="SEED", help="random seed, or one seed per prompt (1,2,3)")),
    "canvas_length": (
        ("--canvas-length",),
        dict(
            type=positive_int,
            metavar="N",
            help="canvas size in tokens, prompt included, capped at the model's max_position_embeddings",
        ),
    ),
    "anchor_eosbos": (
        ("--no-anchors",),
        dict(
            action="store_const",
            const=False,
            help="do not pin EOS + BOS after the requested length (the canvas then runs free)",
        ),
    ),
    "trim_at_eos": (
        ("--no-trim",),
        dict(action="store_const", const=False, help="do not cut the output at the first EOS"),
    ),
    "stop_strings": (
        ("--stop",),
        dict(action="append", metavar="TEXT", help="also cut the output before TEXT (repeatable)"),
    ),
    "align_rows": (
        ("--align-rows",),
        dict(
            action="store_const",
            const=True,
            help="give each left-padded prompt the positions and anchors it would have alone",
        ),
    ),
    "skip_tail": (
        ("--skip-tail",),
        dict(
            action="store_const",
            const=True,
            help="leave the canvas after the BOS anchor out of every forward (faster; the official code denoises "
            "it as context, which changes the result)",
        ),
    ),
    "denoise_end": (
        ("--denoise-end",),
        dict(type=nonneg_int, metavar="POS", help="canvas positions from POS on keep their random initial tokens"),
    ),
    "frozen": (
        ("--frozen",),
        dict(
            action="append",
            type=frozen_pair,
            metavar="POS:ID",
            help="pin canvas position POS to token ID in every row (repeatable; disables the anchors)",
        ),
    ),
    "auto_max_new_tokens": (
        ("--auto-max-new-tokens",),
        dict(
            type=positive_int,
            metavar="N",
            help="with an auto budget: the largest answer the probe canvas holds",
        ),
    ),
    "auto_probe_steps": (
        ("--auto-probe-steps",),
        dict(
            type=positive_int,
            metavar="K",
            help="with an auto budget: probe forwards before the budget is read (argmax drafts in between)",
        ),
    ),
    "grow": (
        ("--grow",),
        dict(
            action="store_const",
            const=True,
            help="a row whose last answer positions are confidently not EOS gets fresh positions before its EOS "
            "anchor (in the first half of the run; up to --grow-max)",
        ),
    ),
    "grow_max": (
        ("--grow-max",),
        dict(type=positive_int, metavar="N", help="--grow: the largest answer a row grows to (default: what fits)"),
    ),
    "shrink": (
        ("--shrink",),
        dict(
            action="store_const",
            const=True,
            help="a row whose first EOS stays put for --shrink-patience steps ends there: the positions after it "
            "leave the forwards",
        ),
    ),
    "shrink_patience": (
        ("--shrink-patience",),
        dict(type=nonneg_int, metavar="K", help="--shrink: steps an EOS must stay put after it appears"),
    ),
}

SAMPLER_OPTIONS = (
    "max_new_tokens",
    "num_denoising_steps",
    "sampler",
    "schedule",
    "temperature",
    "tokens_per_step",
    "top_k",
    "top_p",
    "min_p",
    "min_log_snr",
    "max_log_snr",
    "early_stop_patience",
    "stop_on_cycle",
    "corrector_steps",
    "greedy_tail",
    "entropy_bound",
    "seed",
)
CANVAS_OPTIONS = (
    "canvas_length",
    "anchor_eosbos",
    "trim_at_eos",
    "stop_strings",
    "align_rows",
    "skip_tail",
    "denoise_end",
    "frozen",
)
# Canvases that size themselves (with `--max-new-tokens auto`, which `auto_budget=True` allows).
SIZING_OPTIONS = (
    "auto_max_new_tokens",
    "auto_probe_steps",
    "grow",
    "grow_max",
    "shrink",
    "shrink_patience",
)

_AUTO_BUDGET_HELP = (
    "; 'auto': the first forward probes a canvas of --auto-max-new-tokens and each answer is sized to where "
    "the model puts EOS, plus as many positions again (at least 4), at least 16 in all"
)


def _shown(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def add_sampling_args(
    parser,
    defaults: Mapping[str, Any] | None = None,
    *,
    only: Iterable[str] = SAMPLER_OPTIONS + CANVAS_OPTIONS,
    auto_budget: bool = False,
) -> None:
    """Add the sampler options named in `only` (generate()'s keyword names, in the order given) to
    `parser` (a parser or an argument group). `auto_budget`: `--max-new-tokens` also takes `auto`
    (for commands that pass it to generate() as it is, with the `SIZING_OPTIONS`).

    `defaults`: name -> the command's default, used when the option is not given and shown in the
    help; a `DefaultRule` is only shown. Options without one stay None (unset) and show the official
    default, which generate() applies when the model's generation config does not set them.
    """
    defaults = dict(defaults or {})
    only = tuple(only)
    parser.set_defaults(sampling_options=tuple(parser.get_default("sampling_options") or ()) + only)
    for name in only:
        flags, kwargs = _SAMPLING_ARGS[name]
        default = defaults.get(name, GENERATION_DEFAULTS.get(name))
        kwargs = dict(kwargs, dest=name, default=None if isinstance(default, DefaultRule) else defaults.get(name))
        if name == "max_new_tokens" and auto_budget:
            kwargs.update(type=budget_or_auto, metavar="N|auto", help=kwargs["help"] + _AUTO_BUDGET_HELP)
        shown = default.text if isinstance(default, DefaultRule) else default
        if shown is not None and kwargs.get("action") != "store_const":
            kwargs["help"] += f" (default: {_shown(shown)})"
        parser.add_argument(*flags, **kwargs)


SIZING_GROUP = (
    "canvas sizing",
    "The canvas follows the answer (all off by default; each implies --skip-tail and needs the anchors).",
)


def add_sizing_args(parser, defaults: Mapping[str, Any] | None = None, description: str | None = None):
    """The "canvas sizing" argument group (`SIZING_OPTIONS`: the probe of `--max-new-tokens auto`, grow,
    shrink) on `parser`, with `defaults` as in `add_sampling_args`; returns the group. Every command
    that generates takes the same flags."""
    group = parser.add_argument_group(SIZING_GROUP[0], description or SIZING_GROUP[1])
    defaults = {"auto_max_new_tokens": DefaultRule("what fits the canvas"), **(defaults or {})}
    add_sampling_args(group, defaults, only=SIZING_OPTIONS)
    return group


def sampling_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """The sampler options `args` holds (those `add_sampling_args` added, listed in
    `args.sampling_options`) as generate() keyword arguments, unset ones left out; checks what no
    single option can."""
    names = getattr(args, "sampling_options", ())
    kwargs = {name: getattr(args, name) for name in names if getattr(args, name) is not None}
    low, high = kwargs.get("min_log_snr"), kwargs.get("max_log_snr")
    if low is not None and high is not None and low >= high:
        raise CLIError(f"argument --min-log-snr: must be below --max-log-snr ({low} >= {high})")
    if "frozen" in kwargs:
        kwargs["frozen"] = [list(pair) for pair in kwargs["frozen"]]
    return kwargs


__all__ = [
    "PROG",
    "CLIError",
    "note",
    "positive_int",
    "nonneg_int",
    "finite_float",
    "nonneg_float",
    "unit_interval",
    "budget_or_auto",
    "positive_budget_or_auto",
    "seed_list",
    "frozen_pair",
    "add_verbosity_args",
    "verbosity",
    "configure_logging",
    "add_model_arg",
    "add_runtime_args",
    "resolve_device",
    "launch_peers_env",
    "launch_peers",
    "model_source",
    "load_model",
    "MAX_PROMPTS_FILE_BYTES",
    "read_prompts_file",
    "parse_ids",
    "DefaultRule",
    "SAMPLER_OPTIONS",
    "CANVAS_OPTIONS",
    "SIZING_OPTIONS",
    "add_sampling_args",
    "add_sizing_args",
    "sampling_kwargs",
]
