"""`sumi serve`: an OpenAI-compatible server for a Sumi model (also `python -m sumi.serving`)."""

from __future__ import annotations

import argparse
import sys

from ..loading import DEFAULT_MODEL
from .settings import ServeSettings

DESCRIPTION = """\
Serve a Sumi model over HTTP with OpenAI's API (/v1/completions, /v1/chat/completions, /v1/models),
a stream of the canvas as it denoises (/v1/canvas), a page to try it (/), /health and /metrics.
Concurrent requests share forward passes, joining at the next denoising step; with a seed a
request's answer is the same alone or among others. Diffusion options (steps, sampler, schedule,
canvas_length, tokens_per_step, top_k, min_p, stop_on_cycle, ...) are extra body fields that
default to the model's generation config.
"""

EPILOG = """\
examples:
  sumi serve                                   # the bundled demo model on http://127.0.0.1:8000
  sumi serve --model path/to/checkpoint --port 9000 --api-key secret
  curl http://127.0.0.1:8000/v1/completions -H 'Content-Type: application/json' \\
      -d '{"prompt": "def add(a, b):", "max_tokens": 32, "steps": 32, "seed": 0}'
"""


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register `serve` on a subparsers object (`parser.add_subparsers()`)."""
    p = subparsers.add_parser(
        "serve",
        help="serve a model with an OpenAI-compatible HTTP API",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(p)
    p.set_defaults(func=run)
    return p


def add_arguments(p: argparse.ArgumentParser) -> None:
    d = ServeSettings()
    p.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        help=f"a bundled model, a folder, a preset or a Hub id (default: {DEFAULT_MODEL})",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port (default: 8000; 0 = any free port)")
    p.add_argument("--api-key", default=None, help="require `Authorization: Bearer KEY` on /v1/*")
    p.add_argument(
        "--max-batch-rows",
        type=int,
        default=d.max_batch_rows,
        help=f"canvas rows denoised together in one forward (default: {d.max_batch_rows})",
    )
    p.add_argument(
        "--max-queue",
        type=int,
        default=d.max_queue,
        help=f"requests waiting for a row; past it 429 (default: {d.max_queue})",
    )
    p.add_argument(
        "--max-canvas",
        type=int,
        default=None,
        help="largest canvas_length a request may ask for (default: the model's positions)",
    )
    p.add_argument("--max-prompt-tokens", type=int, default=None, help="longest prompt (default: what fits the canvas)")
    p.add_argument(
        "--max-steps", type=int, default=d.max_steps, help=f"most steps per request (default: {d.max_steps})"
    )
    p.add_argument(
        "--max-body-bytes",
        type=int,
        default=d.max_body_bytes,
        help=f"largest request body (default: {d.max_body_bytes})",
    )
    p.add_argument("--served-model-name", default=None, help="the id in /v1/models (default: --model)")
    p.add_argument(
        "--dtype",
        choices=("float32", "bfloat16", "float16"),
        default=None,
        help="weight dtype (default: the checkpoint's)",
    )
    p.add_argument(
        "--batch-invariant",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="multiply in GEMM calls of sizes probed at start-up to keep every row's bits, so a seeded "
        "request is bit-identical alone or batched (default: on; CPU GEMMs otherwise change a row's "
        "last bits with the batch, in bf16 and, with several threads, in fp32)",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads for the forwards (default: torch's, one per core). On a 2-core machine 1 "
        "served more: the forwards of a few rows are too small to split, and the HTTP thread needs a core",
    )
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, ... (default: cuda when available)")
    p.add_argument("--log-level", default="info", choices=("critical", "error", "warning", "info", "debug"))


def settings_from_args(args: argparse.Namespace) -> ServeSettings:
    """Raises ValueError naming the flag."""
    try:
        return ServeSettings(
            model_name=args.served_model_name or args.model,
            api_key=args.api_key,
            max_batch_rows=args.max_batch_rows,
            max_queue=args.max_queue,
            max_canvas=args.max_canvas,
            max_prompt_tokens=args.max_prompt_tokens,
            max_steps=args.max_steps,
            max_body_bytes=args.max_body_bytes,
            batch_invariant=args.batch_invariant,
        )
    except ValueError as e:
        raise ValueError(f"argument --{str(e).split()[0].replace('_', '-')}: {e}") from None


def run(args: argparse.Namespace) -> int:
    """Load the model and serve until interrupted. Returns the exit status (2: bad arguments)."""
    from ..cli.common import CLIError, resolve_device

    try:
        settings = settings_from_args(args)
        if not 0 <= args.port < 65536:
            raise ValueError(f"argument --port: must be in [0, 65536), got {args.port}")
        if args.threads is not None and args.threads < 1:
            raise ValueError(f"argument --threads: must be a positive integer, got {args.threads}")
        device = resolve_device(args.device)
        from .server import bind

        sock = bind(args.host, args.port)  # before loading: a port in use fails fast
    except (ValueError, OSError, CLIError) as e:
        print(f"sumi serve: error: {e}", file=sys.stderr)
        return 2
    import torch

    import sumi

    from .app import create_app

    if args.threads is not None:  # before the batch-invariance probe: GEMM kernels follow the threads
        torch.set_num_threads(args.threads)
    from .server import uvicorn_server

    try:
        model, tokenizer = sumi.load(args.model, dtype=args.dtype, device=device)
    except (ValueError, OSError) as e:
        sock.close()
        print(f"sumi serve: error: argument --model: {e}", file=sys.stderr)
        return 2
    app = create_app(model, tokenizer, settings)
    plan = app.state.service.gemm_plan
    if plan:  # what the batch-invariance probe chose: (most rows per GEMM call, padded to a multiple of)
        calls = ", ".join(f"{shape}: {block}/{multiple}" for shape, (block, multiple) in plan.items())
        print(f"sumi serve: batch-invariant GEMM calls (rows/multiple): {calls}", file=sys.stderr)
    host, port = sock.getsockname()[:2]
    print(
        f"sumi serve: {settings.model_name} on http://{host}:{port} (page: /, API: /v1, metrics: /metrics)",
        file=sys.stderr,
        flush=True,
    )
    try:
        uvicorn_server(app, log_level=args.log_level).run(sockets=[sock])
    except KeyboardInterrupt:  # uvicorn re-raises the Ctrl-C it shut down on: the normal way to stop
        pass
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sumi.serving",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(parser)
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 2)
    return run(args)
