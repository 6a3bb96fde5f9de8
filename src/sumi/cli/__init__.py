"""The `sumi` command line: one module per command, registered in `COMMANDS`.

Run `sumi --help` or `sumi COMMAND --help` for the options. Errors in the input (unknown model, bad
option values, a prompt too long for the canvas, ids out of range) end with a one-line
`sumi: error: ...` message and exit status 2, never a traceback.

A command module has `add_parser(subparsers)`, which adds its command (or several) to the `sumi`
parser. A module with one command may return that parser and define `run(args) -> int`; otherwise
each parser it adds sets its own `func` (`parser.set_defaults(func=...)`). Shared helpers live in
`sumi.cli.common`, which imports no command module.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from .common import PROG, CLIError, add_verbosity_args, configure_logging, verbosity

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

# The commands, in the order `sumi --help` lists them: one line each, imported when the parser is built.
COMMANDS = (
    "sumi.cli.generate",  # generate
    "sumi.cli.chat",  # chat
    "sumi.cli.info",  # info
    "sumi.data.cli",  # data, tokenizer
    "sumi.training.cli",  # train, export
    "sumi.training.sft_cli",  # sft
    "sumi.training.distill_cli",  # distill
    "sumi.evaluation.cli",  # eval, perplexity
    "sumi.serving.cli",  # serve
    "sumi.analysis.cli",  # analyze
)


def register(subparsers, module_name: str) -> None:
    """Add the command(s) of `module_name` (see the module docstring for the contract)."""
    module = importlib.import_module(module_name)
    parser = module.add_parser(subparsers)
    if parser is not None and hasattr(module, "run") and parser.get_default("func") is None:
        parser.set_defaults(func=module.run)


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = argparse.ArgumentParser(
        prog=PROG, description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    add_verbosity_args(parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    sub.required = True
    for name in COMMANDS:
        register(sub, name)
    for command in sub.choices.values():  # `sumi generate -v ...` as well as `sumi -v generate ...`
        add_verbosity_args(command, default=argparse.SUPPRESS)
    return parser


def _parse(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse `argv`; positionals after options (`sumi train RECIPE --resume steps=400`) join the list
    the command names in `intermixed` (argparse alone stops collecting a list at the first option)."""
    args, extra = parser.parse_known_args(argv)
    target = getattr(args, "intermixed", None)
    if extra and target is not None and not any(x.startswith("-") for x in extra):
        getattr(args, target).extend(extra)
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the `sumi` command line; returns the exit status (0 ok, 2 input error)."""
    parser = build_parser()
    try:
        args = _parse(parser, argv)
    except SystemExit as e:  # argparse already printed usage + "error: ..." (or the help)
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 2)
    restore_logging = configure_logging(verbosity(args))
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
    except (MemoryError, RuntimeError) as e:
        if not is_out_of_memory(e):
            raise
        detail = " ".join(str(e).split())[:200] or type(e).__name__
        print(
            f"{PROG}: error: out of memory ({detail}); try --dtype bfloat16, a smaller --canvas-length or batch, "
            "fewer prompts at once, or another --device",
            file=sys.stderr,
        )
        return 1
    finally:
        restore_logging()


# How allocation failures read: torch's CPU allocator ("can't allocate memory: you tried to allocate
# N bytes", "not enough memory" on Windows), CUDA / MPS / XPU ("out of memory"), errno 12 text, C++.
_OOM_PHRASES = (
    "out of memory",
    "can't allocate memory",
    "cannot allocate memory",
    "not enough memory",
    "bad_alloc",
    "failed to allocate",
)


def is_out_of_memory(e: BaseException) -> bool:
    """Whether `e` is a failed memory allocation: a MemoryError, torch's OutOfMemoryError or a
    RuntimeError whose message is an allocator's."""
    if isinstance(e, MemoryError) or type(e).__name__ == "OutOfMemoryError":
        return True
    message = str(e).lower()
    return isinstance(e, RuntimeError) and any(phrase in message for phrase in _OOM_PHRASES)


def _error(e: BaseException) -> None:
    message = " ".join(str(e).split()) or type(e).__name__
    print(f"{PROG}: error: {message}", file=sys.stderr)


__all__ = ["main", "build_parser", "register", "is_out_of_memory", "COMMANDS", "DESCRIPTION"]
