"""`sumi generate`: write text after one or more prompts by denoising a random canvas."""

from __future__ import annotations

import argparse
import json
import secrets
import sys
import time
from collections.abc import Callable
from typing import Any

from ..distributed_inference import sharded_map
from ..seeding import derive_seed
from . import DESCRIPTION
from .chat import chat_once
from .common import (
    CANVAS_OPTIONS,
    SAMPLER_OPTIONS,
    CLIError,
    DefaultRule,
    add_model_arg,
    add_runtime_args,
    add_sampling_args,
    add_sizing_args,
    launch_peers,
    load_model,
    model_source,
    note,
    parse_ids,
    read_prompts_file,
    resolve_device,
    sampling_kwargs,
)
from .display import BarProgress, LiveCanvas, sanitize, write_text

EPILOG = """\
samplers:
  ancestral  (default) re-sample every position from the diffusion posterior, moving from
             noise level lambda_t to lambda_s of the schedule each step
  adaptive   rewrite only the --tokens-per-step positions whose prediction is most confident
             (argmax at --temperature 0, else a tempered sample); the schedule is unused
  greedy     every position becomes the model's argmax each step

canvases that size themselves (each forward pays for every canvas position):
  --max-new-tokens auto   a probe forward on a canvas of --auto-max-new-tokens finds where the model
                          puts EOS; each answer gets twice that many positions (at least 4 more,
                          16 in all; the probe forward counts in num_forwards)
  --grow                  an answer that presses against its EOS anchor gets more positions
  --shrink                an answer whose EOS has settled ends there; later steps skip the rest
  Each implies --skip-tail; --format jsonl reports each row's budget and positions (its cost).
  The probe needs a model that learned where answers end (an SFT model trained with EOS padding,
  like demo-instruct); where no position reaches EOS probability 0.5 the budget is the cap.

examples:
  sumi generate "def fibonacci(n):"
  sumi generate --model path/to/checkpoint --steps 256 --sampler adaptive --tokens-per-step 4 \\
      --temperature 0 "The capital of France is"
  sumi generate --prompts-file prompts.jsonl --format jsonl > out.jsonl
  torchrun --nproc_per_node=8 -m sumi.cli generate --prompts-file prompts.jsonl --format jsonl > out.jsonl
  sumi generate --show-steps --steps 32 "Once upon a time"      # watch the canvas denoise
  sumi generate --model demo-instruct --max-new-tokens auto --shrink --seed 0 --format jsonl \\
      $'User:\\nSort these numbers from smallest to largest: 42, 7, 19\\nAssistant:\\n'   # sized: 18, then 9

Without --model the default model is used (see `sumi generate --help`, `--model`). A preset name
(sumi-tiny, sumi-57m, sumi-1b, sumi-7b) builds a model with RANDOM weights: fine for smoke tests,
its output is gibberish.
"""

# A --format jsonl record reports every resolved option; these as they ran instead.
_SET_BY_THE_RUN = ("max_new_tokens", "max_length", "seed", "canvas_length")


def add_parser(subparsers) -> argparse.ArgumentParser:
    g = subparsers.add_parser(
        "generate",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=EPILOG,
        help="write text after one or more prompts by denoising a random canvas",
        description=DESCRIPTION + "\n`sumi generate` writes --max-new-tokens tokens after each PROMPT. All "
        "prompts run as one\nleft-padded batch. Unset sampler options fall back to the model's "
        "generation config, then\nto the official defaults (128 steps, ancestral, linear schedule, "
        "temperature 1, canvas 2048).",
    )
    g.add_argument(
        "prompts",
        nargs="*",
        metavar="PROMPT",
        help="prompt text(s); several prompts form one batch. None: generate from BOS alone",
    )
    add_model_arg(g)
    g.add_argument(
        "--prompts-file",
        metavar="FILE",
        help="read prompts from FILE ('-' = stdin): one prompt per line, or JSONL objects with a "
        '"prompt" field; added after any PROMPT arguments. Each prompt then gets its own seed '
        "(from --seed and its index) and aligned rows, so its output depends neither on the batch "
        "nor on the number of processes: under torchrun each process generates its share and "
        "rank 0 prints all, in order",
    )
    g.add_argument(
        "--ids", action="store_true", help="each PROMPT is token ids (comma or space separated) instead of text"
    )
    g.add_argument(
        "--no-bos",
        action="store_true",
        help="do not prepend the BOS token to each prompt (by default a prompt starts a document)",
    )
    g.add_argument(
        "--chat",
        metavar="MESSAGE",
        help="one chat turn: MESSAGE as the user's, rendered through the model's chat template; prints "
        "the answer (sumi chat for a conversation)",
    )

    s = g.add_argument_group(
        "sampling", "Options left unset come from the model's generation_config.json, else from the defaults shown."
    )
    add_sampling_args(
        s,
        {"max_new_tokens": 64, "seed": DefaultRule("a fresh seed, reported in --format jsonl and on stderr")},
        only=SAMPLER_OPTIONS,
        auto_budget=True,
    )
    add_sampling_args(g.add_argument_group("canvas"), only=CANVAS_OPTIONS)
    add_sizing_args(g)

    r = g.add_argument_group("runtime and output")
    add_runtime_args(r)
    r.add_argument(
        "--format",
        choices=("text", "jsonl"),
        default="text",
        help="text (default): prompt + completion; jsonl: one JSON object per prompt with prompt, "
        "completion, token ids, settings, num_forwards, seconds, its answer budget and the positions it fed "
        "to the forwards (budget, positions; auto_budget with --max-new-tokens auto)",
    )
    r.add_argument(
        "--show-steps",
        action="store_true",
        help="watch the canvas denoise: on a terminal, redraw the generated text after every step; "
        "otherwise a progress bar with per-step statistics (on stderr)",
    )
    r.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    return g


def _read_prompts(args: argparse.Namespace) -> list[str]:
    prompts = list(args.prompts)
    if args.prompts_file:
        prompts += read_prompts_file(args.prompts_file)
    return prompts


def _text_codec(tok, cfg, ids_only: bool) -> tuple[Any, bool]:
    """The model's tokenizer, or a byte-level one when it has none; returns (tokenizer, byte_level)."""
    from ..tokenization import ByteTokenizer

    if tok is not None:
        return tok, False
    V = cfg.vocab_size
    if V < 256 and not ids_only:
        raise CLIError(
            f"argument --model: the model has no tokenizer and its vocabulary ({V} ids) is too small "
            "for the byte-level fallback (needs >= 256); pass token ids with --ids"
        )
    if not ids_only:
        note("note: the model has no tokenizer: using a byte-level fallback (UTF-8 bytes as ids, id = byte value).")
    return ByteTokenizer(max(V, 256), cfg.bos_token_id, cfg.eos_token_id, cfg.pad_token_id), True


def _prompt_rows(
    prompts: list[str], ids_only: bool, bos: int | None, V: int, encode: Callable[[str], list[int]]
) -> list[list[int]]:
    """Token ids of each prompt (text, or ids with --ids), `bos` first unless None; one empty prompt
    when there are none."""
    rows: list[list[int]] = []
    for index, text in enumerate(prompts):
        ids = parse_ids(text, index) if ids_only else encode(text)
        bad = [t for t in ids if not 0 <= t < V]
        if bad:
            raise CLIError(
                f"argument PROMPT: prompt {index + 1} has token id {bad[0]} outside the model's vocabulary [0, {V})"
            )
        rows.append(([bos] if bos is not None else []) + ids)
    return rows or [[bos] if bos is not None else []]


def _progress(args: argparse.Namespace, steps: int, regions: list[tuple[int, int]], decode) -> tuple[Any, Any]:
    """The progress callback the options ask for and its closer (either may be None)."""
    if args.show_steps and sys.stderr.isatty():
        return LiveCanvas(sys.stderr, decode, regions), None
    if args.show_steps or not args.no_progress:
        bar = BarProgress(steps, regions, stats=args.show_steps)
        return bar, bar.close
    return None, None


def _print_results(results: list[dict], settings: dict[str, Any], seed, fmt: str) -> None:
    """`results[i]`: prompt, completion, ids, and `num_forwards` / `seconds` of the batch that ran it."""
    B = len(results)
    if fmt == "jsonl":
        for i, r in enumerate(results):
            r = dict(r)
            batch = dict(num_forwards=r.pop("num_forwards"), seconds=r.pop("seconds"))
            row_settings = dict(settings, seed=seed[i] if isinstance(seed, list) else seed)
            write_text(
                sys.stdout, json.dumps(dict(index=i, **r, settings=row_settings, **batch), ensure_ascii=False) + "\n"
            )
    else:
        for i, r in enumerate(results):
            if B > 1:
                write_text(sys.stdout, f"--- {i + 1}/{B} ---\n")
            write_text(sys.stdout, sanitize(r["prompt"] + r["completion"]) + "\n")
    sys.stdout.flush()


def _row_seeds(seed: int, args: argparse.Namespace, num_rows: int) -> list[int]:
    """One seed per prompt, from the run seed and the prompt's index: a row's output then depends on
    neither its batch nor the number of processes (`--seed 1,2,3` gives them instead)."""
    if isinstance(args.seed, list):
        return list(args.seed)
    return [derive_seed(seed, "prompt", i) for i in range(num_rows)]


def run(args: argparse.Namespace) -> int:
    if args.chat is not None:
        return chat_once(args, args.chat)
    # ---- cheap checks first (before loading any weights)
    prompts = _read_prompts(args)
    options = sampling_kwargs(args)
    num_rows = max(len(prompts), 1)
    if isinstance(args.seed, list) and len(args.seed) != num_rows:
        raise CLIError(
            f"argument --seed: {len(args.seed)} seeds for {num_rows} prompt(s); give one seed or one per prompt"
        )
    device = resolve_device(args.device)
    source = model_source(args.model)
    with launch_peers() as peers:
        return _generate(args, prompts, options, device, source, peers)


def _generate(args: argparse.Namespace, prompts: list[str], options: dict[str, Any], device, source: str, peers) -> int:
    """Load, generate (each process its block of the prompts in a launched run), print on rank 0."""
    import torch

    from ..denoising import canvas_layout
    from ..tokenization import encode_user_text

    if source == "preset":
        note(
            f"note: '{args.model}' is a preset with RANDOM weights (seed 0), not a trained model: the output "
            "is random-weight gibberish, useful only to check that things run. Pass --model PATH "
            "for a trained checkpoint."
        )
    model, tok = load_model(args.model, dtype=args.dtype, device=device, attn_implementation=args.attn_implementation)
    cfg = model.config
    tok, byte_level = _text_codec(tok, cfg, args.ids)

    def encode(text: str) -> list[int]:
        return encode_user_text(tok, text)

    def decode(ids: list[int], skip_special_tokens: bool = False) -> str:
        return tok.decode(ids, skip_special_tokens=skip_special_tokens)

    bos = None if args.no_bos else cfg.bos_token_id
    rows = _prompt_rows(prompts, args.ids, bos, cfg.vocab_size, encode)

    # ---- options: only what the user set; the rest resolves through the model's generation config
    seed = args.seed if args.seed is not None else peers.broadcast(secrets.randbelow(2**31))
    options["seed"] = seed
    per_row = bool(args.prompts_file) or peers.world_size > 1  # batch files: rows independent of their batch
    if per_row:
        options.setdefault("align_rows", True)
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
    auto = resolved["max_new_tokens"] == "auto"
    # the budget the canvas is laid out for: with auto, the probe's largest
    mnt = (resolved["auto_max_new_tokens"] or resolved["canvas_length"]) if auto else resolved["max_new_tokens"]
    try:
        layout = canvas_layout(
            cfg,
            lengths,
            P,
            mnt,
            resolved["canvas_length"],
            anchors=bool(resolved["anchor_eosbos"]) and resolved["frozen"] is None,
            aligned=bool(resolved["align_rows"]),
        )
    except ValueError as e:
        raise CLIError(f"argument PROMPT: {e} (BOS and padding count as prompt tokens; see --canvas-length)") from None
    C = layout.canvas_length
    ran = max(layout.budgets) if mnt > 0 else 0  # the budget that runs: what fits before the anchors
    if ran < mnt and not (auto and resolved["auto_max_new_tokens"] is None):
        flag = "--auto-max-new-tokens" if auto else "--max-new-tokens"
        note(f"{flag} {mnt} cut to {ran}: that is what fits a canvas of {C} after the prompt")
    steps = int(resolved["num_denoising_steps"])
    seeds = _row_seeds(seed, args, B) if per_row else seed

    if args.seed is None and args.format == "text":
        note(f"seed {seed} (pass --seed {seed} to repeat this run)")

    def generate_rows(block: list[int]) -> tuple[list[dict], dict[str, int]]:
        """The records of rows `block` (consecutive indices), generated as one batch."""
        a, b = block[0], block[-1] + 1
        regions = [layout.answer_columns(i) for i in block]
        show = mnt > 0 and peers.is_main
        callback, closer = _progress(args, steps, regions, decode) if show else (None, None)
        start = time.perf_counter()
        try:
            out = model.generate(
                input_ids[a:b].to(device),
                attention_mask=attention_mask[a:b].to(device),
                progress_callback=callback,
                tokenizer=tok if options.get("stop_strings") else None,
                **dict(options, seed=seeds[a:b] if isinstance(seeds, list) else seeds),
            )
        finally:
            if closer is not None:
                closer()
        seconds = round(time.perf_counter() - start, 4)
        sequences = out.sequences.cpu()
        records = []
        for r, i in enumerate(block):
            gen = sequences[r, P : int(out.lengths[r])].tolist()
            record = dict(
                prompt=(prompts[i] if prompts and not args.ids else decode(rows[i], skip_special_tokens=True)),
                completion=decode(gen, skip_special_tokens=True),
                prompt_ids=rows[i],
                completion_ids=gen,
                budget=int(out.budgets[r]),
                positions=int(out.row_positions[r]),
                num_forwards=int(out.num_forwards or 0),
                seconds=seconds,
            )
            if out.auto_budgets is not None:
                record["auto_budget"] = int(out.auto_budgets[r])
            records.append(record)
        return records, {}

    done = sharded_map(generate_rows, list(range(B)), [str(i) for i in range(B)], peers)
    if done is None:  # a rank other than 0 of a launched run: rank 0 prints
        return 0
    settings = {k: v for k, v in resolved.items() if k not in _SET_BY_THE_RUN}
    settings.update(
        model=args.model,
        model_source=source,
        max_new_tokens="auto" if auto else ran,
        canvas_length=C,
        seed=seed,
        dtype=str(next(model.parameters()).dtype).removeprefix("torch."),
        device=str(device),
        tokenizer="bytes" if byte_level else type(tok).__name__,
        bos_prepended=bos is not None,
    )
    if per_row and not isinstance(args.seed, list):
        settings["run_seed"] = seed
    if auto:
        settings["auto_max_new_tokens"] = ran
    elif ran < mnt:
        settings["requested_max_new_tokens"] = mnt
    _print_results(done.records, settings, seeds, args.format)
    return 0


__all__ = ["add_parser", "run"]
