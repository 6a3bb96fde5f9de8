"""What the `sumi` commands share (`sumi.cli.common`) and how commands are registered."""

import argparse
import inspect
import logging
import subprocess
import sys
import types
from pathlib import Path

import pytest

import sumi.cli
from sumi.cli import main
from sumi.cli.common import (
    CANVAS_OPTIONS,
    SAMPLER_OPTIONS,
    CLIError,
    DefaultRule,
    add_sampling_args,
    configure_logging,
    sampling_kwargs,
)
from sumi.generation_sumi import GENERATION_DEFAULTS

REPO = Path(__file__).resolve().parents[1]


def parser_with(defaults=None, only=SAMPLER_OPTIONS + CANVAS_OPTIONS) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    add_sampling_args(parser, defaults, only=only)
    return parser


# ----------------------------------------------------------------------------- sampler options
def test_every_sampler_option_is_a_generate_keyword():
    from sumi.generation_sumi import SumiGenerationMixin

    accepted = set(inspect.signature(SumiGenerationMixin.generate).parameters)
    assert set(SAMPLER_OPTIONS + CANVAS_OPTIONS) <= set(GENERATION_DEFAULTS) & accepted


def test_unset_options_are_left_to_the_generation_config():
    assert sampling_kwargs(parser_with().parse_args([])) == {}
    assert sampling_kwargs(parser_with({"max_new_tokens": 64}).parse_args([])) == {"max_new_tokens": 64}


def test_the_namespace_becomes_generate_keywords():
    args = parser_with().parse_args(
        [
            "-n",
            "7",
            "--steps",
            "9",
            "--sampler",
            "adaptive",
            "--schedule",
            "cosine",
            "-t",
            "0.5",
            "--tokens-per-step",
            "3",
            "--top-k",
            "5",
            "--top-p",
            "0.9",
            "--min-p",
            "0.05",
            "--min-log-snr",
            "-4",
            "--max-log-snr",
            "6",
            "--early-stop",
            "2",
            "--stop-on-cycle",
            "--seed",
            "1,2",
            "--canvas-length",
            "96",
            "--no-anchors",
            "--no-trim",
            "--stop",
            "a",
            "--stop",
            "b",
            "--align-rows",
            "--skip-tail",
            "--denoise-end",
            "80",
            "--frozen",
            "40:1",
            "--frozen",
            "41:2",
        ]
    )
    assert sampling_kwargs(args) == dict(
        max_new_tokens=7,
        num_denoising_steps=9,
        sampler="adaptive",
        schedule="cosine",
        temperature=0.5,
        tokens_per_step=3,
        top_k=5,
        top_p=0.9,
        min_p=0.05,
        min_log_snr=-4.0,
        max_log_snr=6.0,
        early_stop_patience=2,
        stop_on_cycle=True,
        seed=[1, 2],
        canvas_length=96,
        anchor_eosbos=False,
        trim_at_eos=False,
        stop_strings=["a", "b"],
        align_rows=True,
        skip_tail=True,
        denoise_end=80,
        frozen=[[40, 1], [41, 2]],
    )
    assert sampling_kwargs(parser_with().parse_args(["--num-denoising-steps", "5"])) == {"num_denoising_steps": 5}


def test_only_the_options_a_command_added_are_returned():
    parser = parser_with({"sampler": "adaptive"}, only=("sampler", "num_denoising_steps"))
    parser.add_argument("--seed", type=int, default=0)  # a command's own seed (a base seed, say)
    args = parser.parse_args(["--steps", "4"])
    assert sampling_kwargs(args) == {"sampler": "adaptive", "num_denoising_steps": 4}
    with pytest.raises(SystemExit):
        parser.parse_args(["--top-k", "3"])


def test_min_log_snr_must_be_below_max():
    args = parser_with().parse_args(["--min-log-snr", "2", "--max-log-snr", "2"])
    with pytest.raises(CLIError, match=r"argument --min-log-snr: must be below --max-log-snr \(2.0 >= 2.0\)"):
        sampling_kwargs(args)


def test_help_shows_the_default_each_command_uses():
    text = parser_with(
        {"num_denoising_steps": 256, "tokens_per_step": DefaultRule("ceil(canvas_length / steps)")},
        only=("num_denoising_steps", "tokens_per_step", "temperature"),
    ).format_help()
    text = " ".join(text.split())
    assert "one forward pass each (default: 256)" in text
    assert "(default: ceil(canvas_length / steps))" in text
    assert f"(default: {GENERATION_DEFAULTS['temperature']:g})" in text  # the official default when unset
    args = parser_with({"tokens_per_step": DefaultRule("a rule")}, only=("tokens_per_step",)).parse_args([])
    assert args.tokens_per_step is None  # a rule is shown, not applied


# ----------------------------------------------------------------------------- logging
@pytest.fixture
def clean_logging():
    names = ("sumi", "sumi.loading", "sumi.evaluation", "sumi.test_own")
    saved = {n: (logging.getLogger(n).level, list(logging.getLogger(n).handlers)) for n in names}
    yield
    for n, (level, handlers) in saved.items():
        logging.getLogger(n).setLevel(level)
        logging.getLogger(n).handlers[:] = handlers


@pytest.mark.parametrize(
    "verbosity, shown",
    [
        (-2, set()),
        (-1, {"error"}),
        (0, {"warning", "error"}),
        (1, {"info", "warning", "error", "loading"}),
        (2, {"debug", "info", "warning", "error", "loading"}),
    ],
)
def test_verbosity_picks_what_reaches_stderr(capsys, clean_logging, verbosity, shown):
    configure_logging(verbosity)
    configure_logging(verbosity)  # a second call replaces the first: each message once
    log = logging.getLogger("sumi.evaluation")
    log.debug("debug")
    log.info("info")
    log.warning("warning")
    log.error("error")
    logging.getLogger("sumi.loading").warning("loading")  # the commands print their own notes at 0
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == len(set(lines)) and set(lines) == shown


def test_configuration_is_undone_by_its_restore(clean_logging):
    sumi_logger = logging.getLogger("sumi")
    before = (sumi_logger.level, list(sumi_logger.handlers), logging.getLogger("sumi.loading").level)
    restore = configure_logging(1)
    assert sumi_logger.level == logging.INFO and len(sumi_logger.handlers) == len(before[1]) + 1
    restore()
    assert (sumi_logger.level, sumi_logger.handlers, logging.getLogger("sumi.loading").level) == before


def test_main_leaves_logging_as_it_found_it(capsys, clean_logging):
    sumi_logger = logging.getLogger("sumi")
    before = (sumi_logger.level, list(sumi_logger.handlers))
    assert main(["-vv", "info", "sumi-tiny"]) == 0
    assert main(["-q", "info", "nope"]) == 2
    assert (sumi_logger.level, sumi_logger.handlers) == before


def test_a_logger_with_its_own_handler_prints_once(capsys, clean_logging):
    configure_logging(0)
    own = logging.getLogger("sumi.test_own")
    own.addHandler(logging.StreamHandler(sys.stderr))
    own.warning("once")
    assert capsys.readouterr().err == "once\n"


def test_verbose_flag_before_or_after_the_command(capsys, clean_logging):
    args = sumi.cli.build_parser().parse_args(["-v", "info", "sumi-tiny"])
    assert (args.verbose, args.quiet) == (1, 0)
    args = sumi.cli.build_parser().parse_args(["info", "sumi-tiny", "-qq"])
    assert (args.verbose, args.quiet) == (0, 2)


# ----------------------------------------------------------------------------- commands
def test_a_command_module_registers_with_one_line(capsys, monkeypatch):
    """The extension point `sumi serve` uses: a module with add_parser(subparsers) and run(args)."""
    module = types.ModuleType("fake_command")

    def add_parser(subparsers):
        p = subparsers.add_parser("fake", help="a command added in a test")
        p.add_argument("--times", type=int, default=1)
        return p

    def run(args):
        print("ran " * args.times)
        return 3

    module.add_parser, module.run = add_parser, run
    monkeypatch.setitem(sys.modules, "fake_command", module)
    monkeypatch.setattr(sumi.cli, "COMMANDS", sumi.cli.COMMANDS + ("fake_command",))
    assert main(["fake", "--times", "2"]) == 3
    assert capsys.readouterr().out == "ran ran \n"


def test_overrides_may_follow_the_options(capsys):
    recipe = REPO / "recipes" / "tiny-cpu.yaml"
    assert main(["train", str(recipe), "--dry-run", "steps=400"]) == 0
    assert "run: 400 steps" in capsys.readouterr().out
    assert main(["train", str(recipe), "--dry-run", "steps=400", "--bogus"]) == 2
    assert "unrecognized arguments: steps=400 --bogus" in capsys.readouterr().err
    assert main(["info", "sumi-tiny", "extra"]) == 2  # other commands take no trailing positionals
    assert "unrecognized arguments: extra" in capsys.readouterr().err


@pytest.mark.slow  # a fresh interpreter imports torch and transformers (~10 s on 2 busy cores)
def test_shared_helpers_import_no_command():
    """`sumi.cli.common` is what command modules import: importing it (or `sumi.cli`) loads no command."""
    code = (
        "import sys, sumi.cli.common, sumi.cli; print(sorted(m for m in sys.modules "
        "if m.startswith('sumi.') and m.endswith(('cli', 'generate', 'info'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['sumi.cli']"
