"""`sumi serve`: an OpenAI-compatible HTTP server with step-level continuous batching.

`create_app(model, tokenizer, settings)` builds the FastAPI app; `BackgroundServer` runs it on a
free local port (tests, benchmarks); `cli.run` is the command. Modules: `settings` (limits),
`protocol` (request and response formats), `errors` (OpenAI error bodies), `chat` (messages ->
prompt), `jobs` (request -> canvas job -> choices), `canvas` (frames of the denoising canvas),
`scheduler` (the engine thread), `metrics` (Prometheus text), `middleware`, `server` (uvicorn).
"""

from .app import create_app
from .server import BackgroundServer
from .settings import ServeSettings

__all__ = ["create_app", "BackgroundServer", "ServeSettings"]
