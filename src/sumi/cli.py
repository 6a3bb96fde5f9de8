"""The `sumi` command line: `sumi generate` and `sumi info`.

Run `sumi --help`, `sumi generate --help` or `sumi info --help` for the options. Errors in the
input (unknown model, bad option values, a prompt too long for the canvas, ids out of range) end
with a one-line `sumi: error: ...` message and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import secrets
import shutil
import sys
import time
import unicodedata
from pathlib import Path
from typing import Any, Callable, Sequence

PROG = "sumi"

DESCRIPTION = """\
Run Sumi uniform diffusion language models.

How uniform diffusion generates text: instead of writing one token after another (as an
autoregressive model does), Sumi starts from a *canvas* of random tokens placed after the prompt
and denoises every position in parallel, for a fixed number of steps (one forward pass each).
At each step the model predicts the clean token at every position and the sampler moves the
canvas a little closer to that prediction; any token may still change at any later step (unlike
masked diffusion, where a filled position is final). By default an end-of-text token is pinned
right after the requested length, followed by a begin-of-text token: the document boundary the
model saw in training. The output is the prompt plus the canvas up to the first end-of-text.
"""

GENERATE_EPILOG = """\
samplers:
  ancestral  (default) re-sample every position from the diffusion posterior, moving from
             noise level lambda_t to lambda_s of the schedule each step
  adaptive   rewrite only the --tokens-per-step positions whose prediction is most confident
             (argmax at --temperature 0, else a tempered sample); the schedule is unused
  greedy     every position becomes the model's argmax each step

examples:
  sumi generate "def fibonacci(n):"
  sumi generate --model path/to/checkpoint --steps 256 --sampler adaptive --tokens-per-step 4 \\
      --temperature 0 "The capital of France is"
  sumi generate --prompts-file prompts.jsonl --format jsonl > out.jsonl
  sumi generate --show-steps --steps 32 "Once upon a time"      # watch the canvas denoise

Without --model the default model is used (see `sumi generate --help`, `--model`). A preset name
(sumi-tiny, sumi-57m, sumi-1b, sumi-7b) builds a model with RANDOM weights: fine for smoke tests,
its output is gibberish.
"""

INFO_EPILOG = """\
The parameter count is computed on PyTorch's meta device (no memory is allocated, so even sumi-7b
is instant). Memory estimates are for the weights in each dtype and, roughly, for the largest
temporaries of one denoising step of a 2048-token canvas at batch 1 (see the printed breakdown).
"""

logger = logging.getLogger(__name__)


class CLIError(Exception):
    """An input error, reported as one line `sumi: error: ...` with exit status 2."""


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


def _float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def nonneg_float(text: str) -> float:
    value = _float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {text!r}")
    return value


def unit_interval(text: str) -> float:
    value = _float(text)
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {text!r}")
    return value


def seed_list(text: str) -> int | list[int]:
    """`42`, or `1,2,3` (one seed per prompt)."""
    parts = [p.strip() for p in text.split(",")]
    try:
        seeds = [int(p) for p in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer or a comma-separated list of integers, got {text!r}") from None
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


# ----------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    from .loading import DEFAULT_MODEL

    fmt = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(prog=PROG, description=DESCRIPTION, formatter_class=fmt)
    from . import __version__

    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    sub.required = True

    # ---- generate
    g = sub.add_parser(
        "generate", formatter_class=fmt, epilog=GENERATE_EPILOG,
        help="write text after one or more prompts by denoising a random canvas",
        description=DESCRIPTION + "\n`sumi generate` writes --max-new-tokens tokens after each PROMPT. All "
                    "prompts run as one\nleft-padded batch. Unset sampler options fall back to the model's "
                    "generation config, then\nto the official defaults (128 steps, ancestral, linear schedule, "
                    "temperature 1, canvas 2048).",
    )
    g.add_argument("prompts", nargs="*", metavar="PROMPT",
                   help="prompt text(s); several prompts form one batch. None: generate from BOS alone")
    g.add_argument("--model", "-m", default=DEFAULT_MODEL, metavar="PATH_OR_PRESET",
                   help=f"a checkpoint folder, a preset name (random weights) or a Hub id (default: {DEFAULT_MODEL})")
    g.add_argument("--prompts-file", metavar="FILE",
                   help="read prompts from FILE ('-' = stdin): one prompt per line, or JSONL objects with a "
                        "\"prompt\" field; added after any PROMPT arguments")
    g.add_argument("--ids", action="store_true",
                   help="each PROMPT is token ids (comma or space separated) instead of text")
    g.add_argument("--no-bos", action="store_true",
                   help="do not prepend the BOS token to each prompt (by default a prompt starts a document)")

    s = g.add_argument_group("sampling", "Options left unset come from the model's generation_config.json, "
                                         "else from the defaults shown.")
    s.add_argument("--max-new-tokens", "-n", type=nonneg_int, default=64, metavar="N",
                   help="tokens to write after each prompt (default: 64)")
    s.add_argument("--steps", "--num-denoising-steps", dest="num_denoising_steps", type=positive_int, metavar="N",
                   help="denoising steps, one forward pass each (default: 128)")
    s.add_argument("--sampler", choices=("ancestral", "adaptive", "greedy"), help="default: ancestral")
    s.add_argument("--schedule", choices=("linear", "cosine"), help="noise schedule of the ancestral sampler "
                   "(default: linear)")
    s.add_argument("--temperature", "-t", type=nonneg_float, metavar="T",
                   help="softmax temperature of the denoiser; 0 = argmax (default: 1.0)")
    s.add_argument("--tokens-per-step", type=positive_int, metavar="K",
                   help="positions the adaptive sampler rewrites per step (default: 1)")
    s.add_argument("--top-k", type=positive_int, metavar="K", help="sample only among the K most likely tokens")
    s.add_argument("--top-p", type=unit_interval, metavar="P", help="nucleus sampling: keep the top tokens "
                   "holding probability mass P")
    s.add_argument("--min-p", type=unit_interval, metavar="P", help="keep tokens with probability >= P * p_max")
    s.add_argument("--min-log-snr", type=_float, metavar="L", help="lowest log-SNR of the schedule (default: -9)")
    s.add_argument("--max-log-snr", type=_float, metavar="L", help="highest log-SNR of the schedule (default: 9)")
    s.add_argument("--early-stop", dest="early_stop_patience", type=positive_int, metavar="PATIENCE",
                   help="a row stops after PATIENCE consecutive steps that change nothing in it (exact for "
                        "greedy and adaptive at temperature 0 with PATIENCE 1; a heuristic for ancestral)")
    s.add_argument("--stop-on-cycle", action="store_true",
                   help="greedy / adaptive at temperature 0: a row stops once its canvas repeats a recent state, "
                        "keeping the canvas the remaining steps would end on (exact, fewer forwards)")
    s.add_argument("--seed", type=seed_list, metavar="SEED",
                   help="random seed, or one seed per prompt (1,2,3); default: a fresh seed, reported in "
                        "--format jsonl and on stderr")

    c = g.add_argument_group("canvas")
    c.add_argument("--canvas-length", type=positive_int, metavar="N",
                   help="canvas size in tokens, prompt included (default: 2048, capped at the model's "
                        "max_position_embeddings)")
    c.add_argument("--no-anchors", action="store_true",
                   help="do not pin EOS + BOS after the requested length (the canvas then runs free)")
    c.add_argument("--no-trim", action="store_true", help="do not cut the output at the first EOS")
    c.add_argument("--stop", action="append", metavar="TEXT",
                   help="also cut the output before TEXT (repeatable)")
    c.add_argument("--align-rows", action="store_true",
                   help="give each left-padded prompt the positions and anchors it would have alone")
    c.add_argument("--skip-tail", action="store_true",
                   help="leave the canvas after the BOS anchor out of every forward (faster; the official "
                        "code denoises it as context, which changes the result)")
    c.add_argument("--denoise-end", type=nonneg_int, metavar="POS",
                   help="canvas positions from POS on keep their random initial tokens")
    c.add_argument("--frozen", action="append", type=frozen_pair, metavar="POS:ID",
                   help="pin canvas position POS to token ID in every row (repeatable; disables the anchors)")

    r = g.add_argument_group("runtime and output")
    r.add_argument("--dtype", choices=("float32", "bfloat16", "float16"),
                   help="weight dtype (default: the checkpoint's; float32 for presets other than sumi-7b)")
    r.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, ... (default: cuda when available, else cpu)")
    r.add_argument("--attn", dest="attn_implementation", choices=("sdpa", "eager"),
                   help="attention implementation (default: sdpa)")
    r.add_argument("--format", choices=("text", "jsonl"), default="text",
                   help="text (default): prompt + completion; jsonl: one JSON object per prompt with prompt, "
                        "completion, token ids, settings, num_forwards, seconds")
    r.add_argument("--show-steps", action="store_true",
                   help="watch the canvas denoise: on a terminal, redraw the generated text after every step; "
                        "otherwise a progress bar with per-step statistics (on stderr)")
    r.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    g.set_defaults(func=cmd_generate)

    # ---- info
    i = sub.add_parser("info", formatter_class=fmt, epilog=INFO_EPILOG,
                       help="show a model's config, parameter count and memory estimates",
                       description="Show the config, parameter count and memory needs of a checkpoint folder, "
                                   "a preset or a Hub id\n(without loading any weights).")
    i.add_argument("model", metavar="PATH_OR_PRESET", help="a checkpoint folder, a preset name or a Hub id")
    i.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    i.add_argument("--canvas-length", type=positive_int, default=2048, metavar="N",
                   help="canvas of the activation estimate (default: 2048, capped at max_position_embeddings)")
    i.set_defaults(func=cmd_info)
    _register_extra_commands(sub)
    return parser


def _register_extra_commands(sub) -> None:
    """Commands whose code lives with the concept they serve; each module has `register_cli(sub)`."""
    from .analysis import cli as analysis_cli
    from .data import cli as data_cli
    from .evaluation import cli as evaluation_cli
    from .training import cli as training_cli

    for module in (data_cli, training_cli, evaluation_cli, analysis_cli):
        module.register_cli(sub)


# ----------------------------------------------------------------------------- entry point
def main(argv: Sequence[str] | None = None) -> int:
    """Run the `sumi` command line; returns the exit status (0 ok, 2 input error)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse already printed usage + "error: ..." (or the help)
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 2)
    try:
        return args.func(args) or 0
    except BrokenPipeError:  # e.g. `sumi generate ... | head`: stop quietly, like other Unix tools
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())  # so that Python's final flush does not complain
        except (OSError, ValueError, AttributeError):
            pass
        return 141
    except (CLIError, ValueError, TypeError, OSError) as e:
        _error(e)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except RuntimeError as e:
        if type(e).__name__ != "OutOfMemoryError" and "out of memory" not in str(e).lower():
            raise
        print(f"{PROG}: error: out of memory ({' '.join(str(e).split())[:200]}); try --dtype bfloat16, a smaller "
              "--canvas-length, fewer prompts at once, or another --device", file=sys.stderr)
        return 1


def _error(e: BaseException) -> None:
    message = " ".join(str(e).split()) or type(e).__name__
    print(f"{PROG}: error: {message}", file=sys.stderr)


def _note(message: str) -> None:
    print(f"{PROG}: {message}", file=sys.stderr)


# ----------------------------------------------------------------------------- prompts
def read_prompts_file(path: str) -> list[str]:
    """One prompt per line (blank lines skipped), or JSONL objects with a "prompt" field (chosen when
    the file ends in .jsonl or every non-blank line starts with '{')."""
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
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
            raise CLIError(f"argument --prompts-file: line {n} of {path!r} has no string \"prompt\" field")
        prompts.append(obj["prompt"])
    return prompts


def _parse_ids(text: str, index: int) -> list[int]:
    try:
        return [int(t) for t in text.replace(",", " ").split()]
    except ValueError:
        raise CLIError(f"argument PROMPT: prompt {index + 1} is not a list of token ids (--ids): {text!r}") from None


# ----------------------------------------------------------------------------- display helpers
def sanitize(text: str, *, visible_whitespace: bool = False) -> str:
    """Replace control characters (terminal escapes among them) with U+FFFD; with
    `visible_whitespace`, newlines and tabs become ↵ and →."""
    out = []
    for ch in text:
        if visible_whitespace and ch == "\n":
            out.append("↵")
        elif visible_whitespace and ch in "\t\r":
            out.append("→" if ch == "\t" else "")
        elif ch in "\n\t" or unicodedata.category(ch) not in ("Cc", "Cs"):
            out.append(ch)
        else:
            out.append("\ufffd")
    return "".join(out)


def _char_width(ch: str) -> int:
    if unicodedata.combining(ch):
        return 0
    return 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1


def wrap_by_width(text: str, width: int) -> list[str]:
    """Hard-wrap `text` (no newlines) into lines of at most `width` terminal columns."""
    lines, line, used = [], [], 0
    for ch in text:
        w = _char_width(ch)
        if used + w > width and line:
            lines.append("".join(line))
            line, used = [], 0
        line.append(ch)
        used += w
    lines.append("".join(line))
    return lines


def _write(stream, text: str) -> None:
    try:
        stream.write(text)
    except UnicodeEncodeError:
        enc = getattr(stream, "encoding", None) or "ascii"
        stream.write(text.encode(enc, errors="backslashreplace").decode(enc))


class LiveCanvas:
    """`progress_callback` that redraws the decoded generated region of every row after each step,
    with ANSI escapes (cursor up + clear), plus a step counter. For terminals."""

    def __init__(self, stream, decode: Callable[[list[int]], str], regions: list[tuple[int, int]],
                 size: tuple[int, int] | None = None):
        self.stream, self.decode, self.regions = stream, decode, regions
        self.size = size
        self.drawn = 0
        self.previous = None

    def __call__(self, info: dict) -> None:
        z = info["z"]
        cols, rows = self.size or tuple(shutil.get_terminal_size((100, 30)))
        cols = max(cols, 20)
        changed = None
        if self.previous is not None and self.previous.shape == z.shape:
            changed = sum(int((z[i, a:b] != self.previous[i, a:b]).sum()) for i, (a, b) in enumerate(self.regions))
        self.previous = z.detach().clone()
        total = sum(b - a for a, b in self.regions)
        conf = [info["top1_prob"][i, a:b].float().mean().item() for i, (a, b) in enumerate(self.regions) if b > a]
        header = (f"step {info['step'] + 1}/{info['num_steps']}  log-SNR {info['log_snr_s']:+.2f}  "
                  f"changed {'-' if changed is None else changed}/{total}  "
                  f"mean top-1 p {sum(conf) / max(len(conf), 1):.2f}")
        B = len(self.regions)
        budget = max(rows - 2, 2)  # lines for the rows under the header (keep the frame on screen)
        shown = B if B <= budget else budget - 1
        per_row = max(1, budget // max(shown, 1))
        lines = [wrap_by_width(header, cols - 1)[0]]
        for i in range(shown):
            a, b = self.regions[i]
            text = sanitize(self.decode(z[i, a:b].tolist()), visible_whitespace=True)
            prefix = f"[{i + 1}] " if B > 1 else ""
            wrapped = wrap_by_width(prefix + text, cols - 1)
            if len(wrapped) > per_row:
                wrapped = wrapped[:per_row]
                wrapped[-1] = wrapped[-1][:-1] + "…"
            lines.extend(wrapped)
        if shown < B:
            lines.append(f"... {B - shown} more rows")
        out = []
        if self.drawn:
            out.append(f"\x1b[{self.drawn}F")  # back to the first line of the previous frame
        out.append("\x1b[J")  # clear it and everything below
        out.append("".join(line + "\n" for line in lines))
        _write(self.stream, "".join(out))
        self.stream.flush()
        self.drawn = len(lines)


class BarProgress:
    """`progress_callback` driving a tqdm bar on stderr; with `stats`, shows tokens changed in the
    generated region and the mean top-1 probability after each step."""

    def __init__(self, total: int, regions: list[tuple[int, int]], stats: bool = False, stream=None):
        from tqdm.auto import tqdm

        self.bar = tqdm(total=total, desc="denoising", unit="step", file=stream or sys.stderr, leave=True,
                        dynamic_ncols=True)
        self.regions, self.stats, self.previous = regions, stats, None

    def __call__(self, info: dict) -> None:
        if self.stats:
            z = info["z"]
            changed = 0
            if self.previous is not None:
                changed = sum(int((z[i, a:b] != self.previous[i, a:b]).sum()) for i, (a, b) in enumerate(self.regions))
            self.previous = z.detach().clone()
            conf = [info["top1_prob"][i, a:b].float().mean().item() for i, (a, b) in enumerate(self.regions) if b > a]
            self.bar.set_postfix(changed=changed, top1=f"{sum(conf) / max(len(conf), 1):.2f}",
                                 log_snr=f"{info['log_snr_s']:+.2f}", refresh=False)
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


# ----------------------------------------------------------------------------- generate
def _resolve_device(name: str):
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError) as e:
        raise CLIError(f"argument --device: invalid device {name!r} ({e})") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise CLIError(f"argument --device: {name!r} requested but CUDA is not available")
    return device


def _model_source(name: str, argument: str = "--model") -> str:
    from .loading import model_source

    try:
        return model_source(name)
    except ValueError as e:
        raise CLIError(f"argument {argument}: {e}") from None


def _load_model(name: str, *, dtype, device, attn_implementation):
    from .loading import load

    loading_logger = logging.getLogger("sumi.loading")
    old_level = loading_logger.level
    loading_logger.setLevel(logging.ERROR)  # the CLI prints its own notice about random weights
    try:
        return load(name, dtype=dtype, device=device, attn_implementation=attn_implementation)
    except (ValueError, OSError) as e:
        raise CLIError(f"argument --model: {e}") from None
    finally:
        loading_logger.setLevel(old_level)


def cmd_generate(args: argparse.Namespace) -> int:
    import torch

    from .tokenization import ByteTokenizer

    # ---- cheap checks first (before loading any weights)
    prompts: list[str] = list(args.prompts)
    if args.prompts_file:
        prompts += read_prompts_file(args.prompts_file)
    if (args.min_log_snr is not None and args.max_log_snr is not None and args.min_log_snr >= args.max_log_snr):
        raise CLIError(f"argument --min-log-snr: must be below --max-log-snr ({args.min_log_snr} >= {args.max_log_snr})")
    num_rows = max(len(prompts), 1)
    if isinstance(args.seed, list) and len(args.seed) != num_rows:
        raise CLIError(f"argument --seed: {len(args.seed)} seeds for {num_rows} prompt(s); give one seed or one per prompt")
    device = _resolve_device(args.device)

    source = _model_source(args.model)
    if source == "preset":
        _note(f"note: '{args.model}' is a preset with RANDOM weights (seed 0), not a trained model: the output "
              "is random-weight gibberish, useful only to check that things run. Pass --model PATH "
              "for a trained checkpoint.")
    model, tok = _load_model(args.model, dtype=args.dtype, device=device, attn_implementation=args.attn_implementation)
    cfg = model.config
    V = cfg.vocab_size

    # ---- tokenizer (or the byte-level fallback)
    byte_level = False
    if tok is None:
        if V < 256 and not args.ids:
            raise CLIError(f"argument --model: the model has no tokenizer and its vocabulary ({V} ids) is too small "
                           "for the byte-level fallback (needs >= 256); pass token ids with --ids")
        tok = ByteTokenizer(max(V, 256), cfg.bos_token_id, cfg.eos_token_id, cfg.pad_token_id)
        byte_level = True
        if not args.ids:
            _note("note: the model has no tokenizer: using a byte-level fallback (UTF-8 bytes as ids, "
                  "id = byte value).")

    def encode(text: str) -> list[int]:
        if byte_level:
            return tok.encode(text)
        return list(tok(text, add_special_tokens=False).input_ids)

    def decode(ids: list[int], skip_special_tokens: bool = False) -> str:
        return tok.decode(ids, skip_special_tokens=skip_special_tokens)

    # ---- prompt ids
    bos = None if args.no_bos else cfg.bos_token_id
    rows: list[list[int]] = []
    for index, text in enumerate(prompts):
        ids = _parse_ids(text, index) if args.ids else encode(text)
        bad = [t for t in ids if not 0 <= t < V]
        if bad:
            raise CLIError(f"argument PROMPT: prompt {index + 1} has token id {bad[0]} outside the model's "
                           f"vocabulary [0, {V})")
        rows.append(([bos] if bos is not None else []) + ids)
    if not rows:
        rows = [[bos] if bos is not None else []]

    # ---- options: only what the user set; the rest resolves through the model's generation config
    seed = args.seed if args.seed is not None else secrets.randbelow(2**31)
    options: dict[str, Any] = dict(
        max_new_tokens=args.max_new_tokens, num_denoising_steps=args.num_denoising_steps, seed=seed,
        sampler=args.sampler, schedule=args.schedule, min_log_snr=args.min_log_snr, max_log_snr=args.max_log_snr,
        temperature=args.temperature, tokens_per_step=args.tokens_per_step, canvas_length=args.canvas_length,
        top_k=args.top_k, top_p=args.top_p, min_p=args.min_p, stop_strings=args.stop,
        early_stop_patience=args.early_stop_patience, denoise_end=args.denoise_end,
        frozen=[list(p) for p in args.frozen] if args.frozen else None,
    )
    if args.no_anchors:
        options["anchor_eosbos"] = False
    if args.no_trim:
        options["trim_at_eos"] = False
    if args.align_rows:
        options["align_rows"] = True
    if args.skip_tail:
        options["skip_tail"] = True
    if args.stop_on_cycle:
        options["stop_on_cycle"] = True
    options = {k: v for k, v in options.items() if v is not None}
    resolved = model.resolve_generation_options(options)

    # ---- batch (left-padded) and the canvas check, before any forward pass
    B = len(rows)
    P = max(len(r) for r in rows)
    lengths = [len(r) for r in rows]
    pad_id = cfg.pad_token_id if cfg.pad_token_id is not None else (cfg.eos_token_id or 0)
    if not byte_level and getattr(tok, "pad_token_id", None) is not None and P > 0:
        tok.padding_side = "left"
        batch = tok.pad({"input_ids": rows}, padding=True, return_tensors="pt")
        input_ids, attention_mask = batch["input_ids"], batch["attention_mask"]
    else:
        input_ids = torch.tensor([[pad_id] * (P - len(r)) + r for r in rows], dtype=torch.long).reshape(B, P)
        attention_mask = torch.tensor([[0] * (P - len(r)) + [1] * len(r) for r in rows], dtype=torch.long).reshape(B, P)
    C = min(int(resolved["canvas_length"]), cfg.max_position_embeddings)
    anchors = bool(resolved["anchor_eosbos"]) and resolved["frozen"] is None
    reserve = 2 if anchors else 0
    row_prompt = lengths if resolved["align_rows"] else [P] * B
    for index, p in enumerate(row_prompt):
        if p + reserve >= C:
            raise CLIError(
                f"argument PROMPT: prompt {index + 1} is {p} tokens (BOS and padding included), too long for a canvas "
                f"of {C} tokens{' with the EOS/BOS anchors' if anchors else ''}: shorten it or raise --canvas-length "
                f"(max {cfg.max_position_embeddings} for this model)")
    mnt = resolved["max_new_tokens"]
    budgets = [max(1, min(mnt, C - p - reserve)) for p in row_prompt]
    regions = [(P, P + n) for n in budgets]
    steps = int(resolved["num_denoising_steps"])

    if args.seed is None and args.format == "text":
        _note(f"seed {seed} (pass --seed {seed} to repeat this run)")

    # ---- progress display
    callback = None
    closer = None
    if mnt > 0:
        if args.show_steps and sys.stderr.isatty():
            callback = LiveCanvas(sys.stderr, decode, regions)
        elif args.show_steps or not args.no_progress:
            bar = BarProgress(steps, regions, stats=args.show_steps)
            callback, closer = bar, bar.close

    start = time.perf_counter()
    try:
        out = model.generate(input_ids.to(device), attention_mask=attention_mask.to(device), progress_callback=callback,
                             tokenizer=tok if args.stop else None, **options)
    finally:
        if closer is not None:
            closer()
    seconds = time.perf_counter() - start

    # ---- results
    sequences = out.sequences.cpu()
    results = []
    for i in range(B):
        gen = sequences[i, P:int(out.lengths[i])].tolist()
        prompt_ids = rows[i]
        results.append(dict(
            prompt=(prompts[i] if prompts and not args.ids else decode(prompt_ids, skip_special_tokens=True)),
            completion=decode(gen, skip_special_tokens=True),
            prompt_ids=prompt_ids, completion_ids=gen,
        ))
    settings = {k: resolved[k] for k in ("num_denoising_steps", "sampler", "schedule", "temperature",
                                         "tokens_per_step", "min_log_snr", "max_log_snr", "top_k", "top_p",
                                         "min_p", "stop_strings", "align_rows", "early_stop_patience",
                                         "stop_on_cycle", "skip_tail", "anchor_eosbos", "trim_at_eos", "denoise_end", "frozen")}
    settings.update(model=args.model, model_source=source, max_new_tokens=mnt, canvas_length=C, seed=seed,
                    dtype=str(next(model.parameters()).dtype).removeprefix("torch."), device=str(device),
                    tokenizer="bytes" if byte_level else type(tok).__name__, bos_prepended=bos is not None)
    if args.format == "jsonl":
        for i, r in enumerate(results):
            row_settings = dict(settings, seed=seed[i] if isinstance(seed, list) else seed)
            record = dict(index=i, **r, settings=row_settings, num_forwards=int(out.num_forwards or 0),
                          seconds=round(seconds, 4))
            _write(sys.stdout, json.dumps(record, ensure_ascii=False) + "\n")
    else:
        for i, r in enumerate(results):
            if B > 1:
                _write(sys.stdout, f"--- {i + 1}/{B} ---\n")
            _write(sys.stdout, sanitize(r["prompt"] + r["completion"]) + "\n")
    sys.stdout.flush()
    return 0


# ----------------------------------------------------------------------------- info
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}


def memory_estimate(config, canvas_length: int = 2048, batch_size: int = 1) -> dict[str, Any]:
    """Rough inference memory of one denoising step (bytes), per weight dtype.

    Counts, for a canvas of S = min(canvas_length, max_position_embeddings) tokens and batch B:
      * logits `[B, S, V]` in the model dtype (the lm_head output);
      * sampler temporaries: two fp32 `[B, S, V]` tensors (logits.float() / T and its
        softmax / logsumexp) -- the ancestral sampler never builds the dense posterior;
      * the largest per-layer transient: residual + normed hidden + q/k/v + attention output
        (`[B, S, H]`-sized) and the MLP's gate, up and product (`[B, S, I]` each), in the model dtype;
      * with eager attention only: fp32 scores and probabilities `[B, heads, S, S+1]` (SDPA uses a
        fused kernel and skips them).
    Peak activations = max(sampler phase, per-layer transient + hidden); not counted: the
    allocator's caching and fragmentation, the CUDA context, the tokenizer.
    """
    S = min(int(canvas_length), config.max_position_embeddings)
    B, V, H, I = batch_size, config.vocab_size, config.hidden_size, config.intermediate_size
    q = config.num_attention_heads * config.head_dim
    kv = config.num_key_value_heads * config.head_dim
    out: dict[str, Any] = {"canvas_length": S, "batch_size": B, "per_dtype": {}}
    for name, b in DTYPE_BYTES.items():
        logits = B * S * V * b
        sampler = 2 * B * S * V * 4
        layer = B * S * (2 * H + q + 2 * kv + q) * b + 3 * B * S * I * b
        eager_scores = 2 * B * config.num_attention_heads * S * (S + 1) * 4
        peak = max(logits + sampler, layer)
        out["per_dtype"][name] = dict(logits=logits, sampler_fp32=sampler, layer_transient=layer,
                                      eager_attention_scores=eager_scores, peak_sdpa=peak,
                                      peak_eager=max(logits + sampler, layer + eager_scores))
    return out


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1024
    return f"{n:.2f} TiB"  # pragma: no cover


def _short(n: int) -> str:
    for div, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if n >= div:
            return f"{n / div:.2f}{suffix}"
    return str(n)


def cmd_info(args: argparse.Namespace) -> int:
    from .configuration_sumi import SumiConfig
    from .modeling_sumi import parameter_counts
    name = args.model
    source = _model_source(name, "PATH_OR_PRESET")
    files = None
    if source == "bundled":
        from .loading import BUNDLED_DIR

        name, source = str(BUNDLED_DIR / name), "folder"
    try:
        if source == "preset":
            config = SumiConfig.from_preset(name)
        elif source == "folder":
            folder = Path(name).expanduser()
            if not (folder / "config.json").is_file():
                raise CLIError(f"argument PATH_OR_PRESET: {name!r} is not a model folder: it has no config.json")
            config = SumiConfig.from_pretrained(str(folder))
            weights = sorted(folder.glob("*.safetensors")) + sorted(folder.glob("*.bin"))
            files = dict(count=len(weights), bytes=sum(f.stat().st_size for f in weights),
                         tokenizer=any((folder / f).is_file() for f in ("tokenizer.json", "tokenizer_config.json")))
        else:
            config = SumiConfig.from_pretrained(name)
    except CLIError:
        raise
    except (OSError, ValueError) as e:
        raise CLIError(f"argument PATH_OR_PRESET: cannot read the config of {name!r}: {e}") from None

    counts = parameter_counts(config)
    own_dtype = getattr(config, "dtype", None)
    own_dtype = str(own_dtype).removeprefix("torch.") if own_dtype is not None else None
    mem = memory_estimate(config, args.canvas_length)
    keys = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
            "num_key_value_heads", "head_dim", "max_position_embeddings", "rms_norm_eps", "rope_parameters",
            "bos_token_id", "eos_token_id", "pad_token_id", "tie_word_embeddings")
    report = dict(
        model=name, source=source, random_weights=source == "preset",
        config={k: getattr(config, k) for k in keys} | {"dtype": own_dtype},
        parameters=counts,
        weights_bytes={k: counts["total"] * b for k, b in DTYPE_BYTES.items()},
        activations=mem,
    )
    if files is not None:
        report["files"] = files
    from . import kernels  # which attention bf16 inference gets on this machine

    why = kernels.why_not_for(config.head_dim)
    report["cpu_bf16_attention"] = dict(kernel="SDPA" if why else "sumi native (AVX512-BF16)", why_not=why)
    if args.json:
        print(json.dumps(report, indent=2, default=str))
        return 0

    c = report["config"]
    lines = [
        f"model         {name} ({source}{': random weights when loaded' if source == 'preset' else ''})",
        f"architecture  {c['num_hidden_layers']} layers, hidden {c['hidden_size']}, MLP {c['intermediate_size']} "
        f"(SwiGLU), heads {c['num_attention_heads']} (KV {c['num_key_value_heads']}, head_dim {c['head_dim']})",
        f"vocabulary    {c['vocab_size']} ids; bos {c['bos_token_id']}, eos {c['eos_token_id']}, pad {c['pad_token_id']}",
        f"positions     max {c['max_position_embeddings']}, RoPE theta "
        f"{(c['rope_parameters'] or {}).get('rope_theta')}; rms_norm_eps {c['rms_norm_eps']}",
        f"dtype         {own_dtype or 'not set (float32)'}",
        f"parameters    {counts['total']:,} total ({_short(counts['total'])}) = {counts['non_embedding']:,} "
        f"non-embedding ({_short(counts['non_embedding'])}) + embedding {counts['embedding']:,} + "
        f"lm_head {counts['lm_head']:,}",
        "weights       " + " | ".join(f"{k} {_human(v)}" for k, v in report["weights_bytes"].items()),
    ]
    if files is not None:
        lines.append(f"files         {files['count']} weight file(s), {_human(files['bytes'])} on disk; "
                     f"tokenizer {'present' if files['tokenizer'] else 'absent'}")
    att = report["cpu_bf16_attention"]
    lines.append(f"bf16 on CPU   attention through {att['kernel']}" + (f" ({att['why_not']})" if att["why_not"] else ""))
    S = mem["canvas_length"]
    lines.append(f"inference     rough activations of one denoising step, canvas {S} x batch 1 "
                 f"(logits [{S}, {c['vocab_size']}] + two fp32 sampler copies, or the largest layer transient; "
                 f"eager adds fp32 [heads, {S}, {S + 1}] scores x2):")
    for k, m in mem["per_dtype"].items():
        lines.append(f"  {k:<9}   logits {_human(m['logits'])}, sampler fp32 {_human(m['sampler_fp32'])}, layer "
                     f"{_human(m['layer_transient'])}; peak {_human(m['peak_sdpa'])} (sdpa) / "
                     f"{_human(m['peak_eager'])} (eager); with weights ~{_human(report['weights_bytes'][k] + m['peak_sdpa'])}")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
