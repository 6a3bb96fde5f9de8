"""The training loop: FSDP2 over a 1-D DeviceMesh, AdamW, WSD/cosine, accumulation, eval, DCP checkpoints.

One code path for 1 process (a world-size-1 group is created), N CPU processes (gloo) and N GPUs
(nccl). Step s of a run:

1. lr = `lr_at(s)`; the noise of the whole global batch of step s is drawn from generators seeded
   by (seed, s) (`noise.draw_step_noise`), so every rank knows the number of scored tokens
   ``n_s`` of the global batch before any backward;
2. for each of the ``accum = global / (micro * world)`` micro-steps m, each rank reads its rows of
   global data batch ``s * accum + m``, noises them with its slice of the step's noise, and
   back-propagates ``loss_sum * world / n_s``; FSDP averages gradients over ranks (divides by
   world) and the micro-steps add up, so the gradient is that of the mean loss over all scored
   tokens of the global batch, whatever the layout;
3. the global gradient norm is clipped (`clip_grad_norm_` on the DTensor gradients), AdamW steps,
   the logged loss is the all-reduced loss sum / ``n_s``.

Checkpoints hold the model and optimizer (DCP) and the step; data order and noise are functions of
(seed, step), so a resumed run continues exactly like an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from ..diffusion import corrupt, nelbo_on_grid
from ..seeding import derive_seed
from .checkpoint import Checkpointer, find_latest_checkpoint, list_checkpoints, load_checkpoint
from .config import ConfigError, TrainConfig
from .distill import DistillTrainingModule, distill_sources, evaluate_distill
from .distributed import DistContext, init_distributed, shutdown
from .dryrun import build_model_config
from .loss import DiffusionTrainingModule
from .metrics import RunLogger
from .mixture import MixtureSource, open_mixture
from .noise import draw_step_noise, eval_t_grid
from .optim import build_optimizer, set_lr
from .phases import PhasePlan, build_plan
from .runlock import RunFolderInUse, run_folder_lock
from .sft import apply_lora, evaluate_sft, global_scored_tokens, merge_lora, sft_sources
from .sources import BatchSource, make_source, open_source

logger = logging.getLogger("sumi.training")


@dataclass
class TrainResult:
    """What `train` returns (on every rank; `model` only on rank 0 and only if asked for)."""

    start_step: int
    step: int  # optimizer steps completed
    losses: list[float] = field(default_factory=list)  # per step of this invocation
    evals: list[dict[str, Any]] = field(default_factory=list)
    checkpoint: Path | None = None  # the last checkpoint written
    resumed_from: Path | None = None
    model: Any = None  # a plain (unsharded, CPU, fp32) SumiForMaskGeneration when return_model=True


# ----------------------------------------------------------------------------- model
def build_training_module(config: TrainConfig, model_config, ctx: DistContext) -> DiffusionTrainingModule:
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    from ..modeling_sumi import SumiForMaskGeneration

    if config.model.init == "meta":
        # Big models: no rank ever holds the full fp32 model. Build on the meta device, shard, then
        # allocate only the local shards on the device and either initialise them in place with the
        # same rules as the model's own init (linear/embedding weights ~ N(0, initializer_range),
        # norm weights = 1; on CUDA, DTensor's random ops give each shard its slice of one global
        # stream, so the values differ from the "cpu" init of the same seed), or, with model.path,
        # fill them from the folder's safetensors, read by rank 0 only and broadcast shard-wise.
        with torch.device("meta"):
            model = SumiForMaskGeneration(model_config)
    elif config.model.path is not None:
        model = SumiForMaskGeneration.from_pretrained(config.model.path, config=model_config, dtype=torch.float32)
    else:
        torch.manual_seed(derive_seed("init", config.seed) % (2**62))
        model = SumiForMaskGeneration(model_config)  # seeded full init on CPU: identical on every rank
    model.config._attn_implementation = config.model.attn_implementation
    if config.task == "sft" and config.sft.lora_r:
        apply_lora(model, config.sft)
    model.train()
    if config.activation_checkpointing:
        enable_activation_checkpointing(model)
    if config.compile:
        for layer in model.model.layers:
            layer.compile()

    if config.task == "distill":
        module: DiffusionTrainingModule = DistillTrainingModule(
            model,
            gidd_weight=config.distill.gidd_weight,
            fused_loss=config.fused_loss,
            chunk_tokens=config.loss_chunk_tokens,
        )
    else:
        module = DiffusionTrainingModule(model, fused_loss=config.fused_loss, chunk_tokens=config.loss_chunk_tokens)
    mesh = init_device_mesh(ctx.device.type, (ctx.world_size,), mesh_dim_names=("dp",))
    layer_mp = root_mp = MixedPrecisionPolicy()
    if config.dtype == "bfloat16" and ctx.device.type == "cuda":
        layer_mp = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
        # keep t (a float input of the root) in fp32: the loss weights depend on it
        root_mp = MixedPrecisionPolicy(
            param_dtype=torch.bfloat16, reduce_dtype=torch.float32, cast_forward_inputs=False
        )
    for layer in model.model.layers:
        fully_shard(layer, mesh=mesh, mp_policy=layer_mp)
    fully_shard(module, mesh=mesh, mp_policy=root_mp)
    if config.model.init == "meta" and config.model.path is not None:
        module.to_empty(device=ctx.device)
        _load_full_weights_from_rank0(model, config.model.path, ctx)
    elif config.model.init == "meta":
        module.to_empty(device=ctx.device)
        torch.manual_seed(
            derive_seed("init", config.seed, "meta", ctx.rank if ctx.device.type == "cpu" else 0) % (2**62)
        )
        std = model_config.initializer_range
        with torch.no_grad():
            for p in module.parameters():
                if p.ndim >= 2:
                    p.normal_(0.0, std)
                else:
                    p.fill_(1.0)
    return module


def _load_full_weights_from_rank0(model, path: str, ctx: DistContext) -> None:
    """Fill a sharded model from an HF folder's safetensors: rank 0 reads them (as fp32), every rank
    receives its shards (`set_model_state_dict(..., broadcast_from_rank0=True)`)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

    full: dict[str, torch.Tensor] = {}
    if ctx.is_main:
        from safetensors.torch import load_file

        files = sorted(Path(path).glob("*.safetensors"))
        if not files:
            raise FileNotFoundError(f"model.path {path!r} has no *.safetensors weights")
        for f in files:
            full.update({k: v.float() for k, v in load_file(str(f)).items()})
    set_model_state_dict(model, full, options=StateDictOptions(full_state_dict=True, broadcast_from_rank0=True))


def enable_activation_checkpointing(model) -> None:
    """Recompute each decoder layer in the backward (transformers' GradientCheckpointingLayer,
    non-reentrant torch.utils.checkpoint)."""
    if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5.2x
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})


def _autocast(config: TrainConfig, device: torch.device):
    if config.dtype == "bfloat16" and device.type == "cpu":
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _total_norm(params, max_norm: float) -> torch.Tensor:
    params = [p for p in params if p.grad is not None]
    if max_norm > 0:
        norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
    else:
        norm = torch.nn.utils.get_total_norm([p.grad for p in params])
    return norm.full_tensor() if hasattr(norm, "full_tensor") else norm


def train_step(
    module: DiffusionTrainingModule,
    optimizer: torch.optim.Optimizer,
    params: list,
    data,
    step: int,
    lr: float,
    config: TrainConfig,
    ctx: DistContext,
    accum: int,
    vocab_size: int,
) -> tuple[float, int, torch.Tensor]:
    """One optimizer step (see the module docstring): returns (mean loss over the global batch's
    scored tokens, their number, the global gradient norm before clipping)."""
    G, mb, W, S = config.batch.global_batch_size, config.batch.micro_batch_size, ctx.world_size, config.data.seq_len
    set_lr(optimizer, lr)
    noise = draw_step_noise(step, G, S, vocab_size, config.data, config.seed, ctx.device)
    micro = [next(data) for _ in range(accum)]  # SFT batches carry their scored positions: count them first
    n_scored = global_scored_tokens(micro, noise.num_scored, ctx.device)
    scale = W / max(1, n_scored)
    loss_sum = torch.zeros((), dtype=torch.float32, device=ctx.device)
    for m in range(accum):
        x = micro[m].to(ctx.device, non_blocking=True)
        first = m * mb * W + ctx.rank * mb
        inputs = noise.apply(x, slice(first, first + mb))  # (z, labels, t), or a batch's own tuple
        with _autocast(config, ctx.device):
            ls = module(*inputs)
        (ls * scale).backward()
        loss_sum += ls.detach().float()
    grad_norm = _total_norm(params, config.optim.grad_clip)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    dist.all_reduce(loss_sum)
    return loss_sum.item() / max(1, n_scored), n_scored, grad_norm


# ----------------------------------------------------------------------------- evaluation
@torch.no_grad()
def evaluate(
    module: DiffusionTrainingModule, source: BatchSource, config: TrainConfig, ctx: DistContext
) -> dict[str, float]:
    """Validation NELBO (nats/token) over `eval.batches` fixed batches.

    The estimator of `sumi.diffusion.estimate_nelbo` (per token ``sum_k w_k loss(t_k) / (t_k (1-t_k))``,
    no z-loss, on the `nelbo_t_grid` of `eval.nelbo_samples` points), with the corruption of each
    (batch, grid point) drawn for the whole global eval batch from a fixed seed: the same number for
    any world size.
    """
    if config.task == "sft":  # the answers given their clean prompts
        return evaluate_sft(module, source, config, ctx)
    if config.task == "distill":  # the student's prediction of held-out teacher endpoints
        return evaluate_distill(module, source, config, ctx)
    V = module.model.config.vocab_size
    beta = module.model.config.uniform_diffusion_beta_is
    S = config.data.seq_len
    gb = config.eval_batch_size(ctx.world_size)
    b = gb // ctx.world_size
    ts, ws = eval_t_grid(config)
    was_training = module.training
    module.eval()
    total = torch.zeros((), dtype=torch.float64, device=ctx.device)
    count = 0
    it = source.batches(
        S,
        b,
        seed=derive_seed("eval-data", config.seed) % (2**31),
        rank=ctx.rank,
        world_size=ctx.world_size,
        start_step=0,
    )
    rows = slice(ctx.rank * b, (ctx.rank + 1) * b)
    with _autocast(config, ctx.device):
        for i in range(config.eval.batches):
            x = next(it).to(ctx.device)
            noise = _eval_noise(x, i, seed=config.seed, global_shape=(gb, S), rows=rows, vocab_size=V)
            total += nelbo_on_grid(module, x, ts, ws, noise, vocab_size=V, beta_is=beta).sum()
            count += x.numel()
    stats = torch.tensor([total.item(), float(count)], dtype=torch.float64, device=ctx.device)
    dist.all_reduce(stats)
    module.train(was_training)
    nelbo = float(stats[0] / stats[1])
    return {"val_nelbo": nelbo, "val_ppl_bound": math.exp(min(nelbo, 700.0)), "val_tokens": int(stats[1])}


def _eval_noise(x: torch.Tensor, batch: int, *, seed: int, global_shape: tuple[int, int], rows: slice, vocab_size: int):
    """`(k, t) -> z` for eval batch `batch` (x `[b, S]`, this rank's `rows` of the global eval batch):
    the corruption is drawn for the whole global batch from (seed, batch, k) and this rank's rows
    taken, so any world size scores the same canvases."""

    def noise(k: int, t: float) -> torch.Tensor:
        g = torch.Generator(device=x.device).manual_seed(derive_seed("eval-noise", seed, batch, k))
        rep = corrupt(torch.full(global_shape, -1, dtype=torch.long, device=x.device), t, vocab_size, generator=g)[rows]
        return torch.where(rep >= 0, rep, x)

    return noise


class Validator:
    """A run's validation policy and scoring: `evaluate` on the validation data every `eval.every`
    steps (0 = never on a schedule) and at the last step (`end_step`) when `eval.at_end`; never
    without data. With named sources (a mixture), each source's validation split is scored on its
    own (``val_nelbo/NAME``) and ``val_nelbo`` is their mean."""

    def __init__(
        self,
        module: DiffusionTrainingModule,
        sources: dict[str, BatchSource],
        config: TrainConfig,
        ctx: DistContext,
        end_step: int | None = None,
    ):
        self.module, self.sources, self.config, self.ctx = module, sources, config, ctx
        self.end_step = config.steps if end_step is None else end_step

    @classmethod
    def for_run(
        cls,
        module: DiffusionTrainingModule,
        config: TrainConfig,
        ctx: DistContext,
        source: BatchSource | None,
        vocab_size: int,
        end_step: int | None = None,
    ) -> Validator:
        """On `source`, else on the config's validation split(s) (skipped, with a warning, when missing)."""
        sources: dict[str, BatchSource] = {}
        if source is not None:
            sources[""] = source
        elif (config.eval.every or config.eval.at_end) and config.task == "pretrain":  # SFT, distill: their own
            named = [(s.name, s) for s in config.data.sources] or [("", None)]
            for name, section in named:
                try:
                    sources[name] = (
                        open_source(section, "validation", vocab_size, model_path=config.model.path)
                        if section is not None
                        else make_source(config.data, "validation", vocab_size)
                    )
                except (ValueError, FileNotFoundError) as e:
                    if ctx.is_main:
                        what = f"source {name!r}" if name else "the run"
                        logger.warning("no validation data for %s (%s): it is not evaluated", what, e)
        return cls(module, sources, config, ctx, end_step)

    def should_run(self, step: int) -> bool:
        """Whether the run validates after `step` optimizer steps."""
        every, at_end = self.config.eval.every, self.config.eval.at_end
        scheduled = bool(every and step % every == 0) or (at_end and step == self.end_step)
        return bool(self.sources) and scheduled

    def run(self, step: int) -> dict[str, Any]:
        """Collective: the eval record of `step` (`evaluate`'s numbers and the time taken)."""
        t0 = time.perf_counter()
        if list(self.sources) == [""]:
            stats = evaluate(self.module, self.sources[""], self.config, self.ctx)
        else:
            by_source = {name: evaluate(self.module, src, self.config, self.ctx) for name, src in self.sources.items()}
            nelbo = sum(r["val_nelbo"] for r in by_source.values()) / len(by_source)
            stats = {
                "val_nelbo": nelbo,
                "val_ppl_bound": math.exp(min(nelbo, 700.0)),
                "val_tokens": sum(r["val_tokens"] for r in by_source.values()),
                **{f"val_nelbo/{name}": r["val_nelbo"] for name, r in by_source.items()},
            }
        return {"kind": "eval", "step": step, **stats, "eval_time_s": round(time.perf_counter() - t0, 4)}


def trainer_state(
    config: TrainConfig,
    model_config,
    world_size: int,
    accum: int,
    step: int,
    plan: PhasePlan | None = None,
    mixture: MixtureSource | None = None,
) -> dict[str, Any]:
    """What a checkpoint records beside the weights: the step, the configs and the data position
    (with phases, the phase; with a mixture, the tokens and passes of each source so far, and where
    each streamed source's next row starts)."""
    G, mb, S = config.batch.global_batch_size, config.batch.micro_batch_size, config.data.seq_len
    state = {
        "format": "sumi-train-state",
        "step": step,
        "world_size": world_size,
        "grad_accum_steps": accum,
        "config": config.to_dict(),
        "model_config": model_config.to_dict(),
        "data": {
            "source": config.data.source,
            "path": config.data.path,
            "seq_len": S,
            "global_batch_size": G,
            "micro_batch_size": mb,
            "seed": config.seed,
            "next_batch_index": step * accum,
            "batch_rows": mb * world_size,
            "rows_consumed": step * G,
            "tokens_consumed": step * G * S,
        },
        "torch_version": torch.__version__,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    if plan is not None and config.phases:
        phase = plan.at(step)
        state["data"]["phase"] = {
            "name": phase.name,
            "index": phase.index,
            "step_in_phase": step - phase.start,
            "steps": phase.steps,
        }
    if mixture is not None:
        state["data"]["source_tokens"] = mixture.tokens_before(step)
        state["data"]["source_epochs"] = mixture.epochs_before(step)
        if mixture.streamed:
            state["data"]["stream_positions"] = mixture.stream_positions(step)
    return state


# ----------------------------------------------------------------------------- data and phases
@dataclass
class DataPlan:
    """The run's data over its phases: the training `source` (a `MixtureSource` with named sources),
    the `PhasePlan`, and `end_step` (earlier than the plan's end when data.on_exhausted=stop cuts it)."""

    source: BatchSource
    plan: PhasePlan
    mixture: MixtureSource | None
    end_step: int

    @classmethod
    def open(cls, config: TrainConfig, source: BatchSource | None, vocab_size: int) -> DataPlan:
        plan = build_plan(config)
        mixture = None
        if source is None and config.data.sources:
            source = mixture = open_mixture(config, plan, vocab_size)
        elif source is None:
            source = make_source(config.data, "train", vocab_size)
        stop = mixture.stop_step() if mixture is not None else None
        return cls(source, plan, mixture, plan.total_steps if stop is None else stop)

    def stream_end(self, step: int) -> int | None:
        """With streamed sources under data.on_exhausted=stop (their lengths are learnt as they are
        read): the run's new `end_step` when step `step` or, looking one step ahead so that the last
        step is known while it runs, step `step + 1` would reuse a window; else None."""
        if self.mixture is None or not self.mixture.streamed:
            return None
        for s in (step, step + 1):
            if s < self.end_step and self.mixture.runs_out(s):
                self.end_step = s
                return s
        return None

    def phase_record(self, step: int) -> dict[str, Any]:
        """``{"phase": name}`` of the phase that step `step` (1-based, done) belonged to, when there are phases."""
        return {"phase": self.plan.at(step - 1).name} if len(self.plan.phases) > 1 else {}

    def record(self, step: int) -> dict[str, Any]:
        """What a training record adds after `step` steps: the phase, and with a mixture the tokens
        drawn from each source so far."""
        out = self.phase_record(step)
        if self.mixture is not None:
            out["source_tokens"] = self.mixture.tokens_before(step)
        return out

    def announce(self, step: int, run_log: RunLogger) -> None:
        """Log a phase that begins at `step` and every source pass (epoch) that step `step` begins."""
        phase = self.plan.at(step)
        if step == phase.start and len(self.plan.phases) > 1:
            run_log.message(
                f"step {step}: phase {phase.index + 1}/{len(self.plan.phases)} {phase.name!r} ({phase.steps} steps)"
            )
            run_log.write({"kind": "phase", "step": step, "phase": phase.name, "steps": phase.steps})
        if self.mixture is None:
            return
        before, after = self.mixture.epochs_before(step), self.mixture.epochs_before(step + 1)
        for name, epoch in after.items():
            if epoch > max(1, before[name]):
                run_log.message(f"step {step + 1}: source {name!r} ran out; pass {epoch} over it begins")
                run_log.write({"kind": "epoch", "step": step + 1, "source": name, "epoch": epoch})


# ----------------------------------------------------------------------------- resume
def _choose_resume(config: TrainConfig, ctx: DistContext, resume: bool) -> Path | None:
    root = config.checkpoint_dir()
    choice: list[Any] = [None]
    if ctx.is_main:
        if resume:
            path = find_latest_checkpoint(root, checksum=config.checkpoint.verify == "sha256")
            choice[0] = str(path) if path else None
            if path is None:
                logger.info("resume: no complete checkpoint in %s; starting from step 0", root)
            resumed = int(path.name.split("_")[1]) if path else -1
            for step, bad in list_checkpoints(root):  # newer than the one used: failed verification
                if step > resumed:
                    aside = bad.with_name(bad.name + ".corrupt")
                    shutil.rmtree(aside, ignore_errors=True)
                    os.replace(bad, aside)
                    logger.warning("moved the unusable checkpoint %s aside to %s", bad, aside.name)
        elif list_checkpoints(root):
            choice[0] = (
                "error",
                f"{root} already holds checkpoints (newest {list_checkpoints(root)[0][1].name}); "
                "pass --resume (checkpoint.resume=true) to continue that run, or set "
                f"out_dir / checkpoint.dir to a new folder; to export it as it is: sumi export {root} OUT_DIR",
            )
    dist.broadcast_object_list(choice, src=0)
    if isinstance(choice[0], (tuple, list)):
        raise ConfigError(choice[0][1])
    return Path(choice[0]) if choice[0] else None


def _check_resumed_state(state: dict[str, Any], config: TrainConfig, mixture: MixtureSource | None) -> None:
    old = state.get("config", {})
    if mixture is not None and "source_tokens" in state.get("data", {}):
        now = mixture.tokens_before(int(state["step"]))
        if state["data"]["source_tokens"] != now:
            logger.warning(
                "resume: the checkpoint's per-source tokens %s differ from this recipe's %s at step %d "
                "(the sources, mixture or phases changed)",
                state["data"]["source_tokens"],
                now,
                state["step"],
            )
    for section, key in (
        ("batch", "global_batch_size"),
        ("data", "seq_len"),
        ("data", "source"),
        ("data", "path"),
        ("data", "sources"),
        (None, "phases"),
        (None, "distill"),
        (None, "seed"),
        (None, "steps"),
    ):
        before = old.get(key) if section is None else old.get(section, {}).get(key)
        current = config.to_dict()
        now = current.get(key) if section is None else current[section].get(key)
        if before is not None and before != now:
            name = key if section is None else f"{section}.{key}"
            logger.warning(
                "resume: %s changed from %r to %r; the run will not continue exactly like the "
                "original (data order, noise or schedule differ)",
                name,
                before,
                now,
            )


def _headline(record: dict[str, Any]) -> str:
    """The eval record's main number, for the run's log line."""
    if "val_nelbo" in record:
        return f"val NELBO {record['val_nelbo']:.4f} nats/token"
    return f"val distillation CE {record['val_distill_ce']:.4f} nats/token"


class _Formatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        level = f"{record.levelname}: " if record.levelno >= logging.WARNING else ""
        return f"[sumi.train] {level}{record.getMessage()}"


# ----------------------------------------------------------------------------- train
def train(
    config: TrainConfig | str | os.PathLike,
    overrides: Sequence[str] = (),
    *,
    resume: bool | None = None,
    source: BatchSource | None = None,
    val_source: BatchSource | None = None,
    return_model: bool = False,
) -> TrainResult:
    """Train according to `config` (a TrainConfig or a recipe path plus ``key=value`` overrides).

    Joins the default process group (torchrun) or creates a world-size-1 one. `resume` overrides
    ``checkpoint.resume``. `source` / `val_source` replace the data the config describes with any
    object implementing the `BatchSource` protocol. With `return_model`, rank 0 gets the trained
    weights as a plain CPU `SumiForMaskGeneration` in `TrainResult.model`.
    """
    if not isinstance(config, TrainConfig):
        config = TrainConfig.from_yaml(config, overrides)
    elif overrides:
        config = config.with_overrides(overrides)
    if resume is not None:
        config.checkpoint.resume = bool(resume)
    config.validate()
    if config.num_threads > 0:
        torch.set_num_threads(config.num_threads)
    ctx = init_distributed(config.device)
    try:
        with _exclusive_run_folders(config, ctx):
            return _train(config, ctx, source, val_source, return_model)
    finally:
        shutdown(ctx)


@contextlib.contextmanager
def _exclusive_run_folders(config: TrainConfig, ctx: DistContext):
    """Rank 0 holds the lock of out_dir (and of checkpoint.dir when it lies elsewhere) for the whole
    run; when another run holds one, every rank fails with the same one-line error (no rank waits)."""
    folders = [Path(config.out_dir).resolve()]
    ckpt = config.checkpoint_dir().resolve()
    if not ckpt.is_relative_to(folders[0]):
        folders.append(ckpt)
    with contextlib.ExitStack() as locks:
        failure: Exception | None = None
        if ctx.is_main:
            try:
                for folder in folders:
                    locks.enter_context(run_folder_lock(folder))
            except (ConfigError, OSError) as e:
                failure = e
        message = [None if failure is None else " ".join(str(failure).split())]
        dist.broadcast_object_list(message, src=0)
        if failure is not None:
            raise failure
        if message[0] is not None:
            raise RunFolderInUse(message[0])
        yield


def _train(config: TrainConfig, ctx: DistContext, source, val_source, return_model) -> TrainResult:
    if ctx.is_main and not logging.getLogger().handlers and not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(_Formatter())
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    config.validate(ctx.world_size)
    accum = config.grad_accum_steps(ctx.world_size)
    model_config = build_model_config(config)
    V, S = model_config.vocab_size, config.data.seq_len
    G, mb, W = config.batch.global_batch_size, config.batch.micro_batch_size, ctx.world_size
    if config.task == "sft" and source is None:  # conversations -> canvases (sumi.training.sft)
        source, val_source = sft_sources(config, val_source)
    if config.task == "distill" and source is None:  # teacher trajectories -> pairs (sumi.training.distill)
        source, val_source = distill_sources(config, ctx, val_source)
    data_plan = DataPlan.open(config, source, V)  # before any work: a bad source fails here

    module = build_training_module(config, model_config, ctx)
    optimizer = build_optimizer(module.model, config.optim)

    start_step = 0
    resumed_from = _choose_resume(config, ctx, config.checkpoint.resume)
    if resumed_from is not None:
        state = load_checkpoint(resumed_from, module.model, optimizer)
        start_step = int(state["step"])
        _check_resumed_state(state, config, data_plan.mixture)
        if data_plan.mixture is not None:  # streamed sources start where the checkpoint's next rows do
            data_plan.mixture.restore_streams(state["data"].get("stream_positions") or {})
        if ctx.is_main:
            logger.info(
                "resumed from %s (step %d, phase %r)", resumed_from, start_step, data_plan.plan.at(start_step).name
            )

    end = data_plan.end_step
    validator = Validator.for_run(module, config, ctx, val_source, V, end_step=end)
    checkpointer = Checkpointer(
        config.checkpoint_dir(),
        every=config.checkpoint.every,
        at_end=config.checkpoint.at_end,
        keep_last=config.checkpoint.keep_last,
        total_steps=end,
        barrier=ctx.barrier,
    )
    run_log = RunLogger(
        config.jsonl_path(),
        enabled=ctx.is_main,
        start_step=start_step,
        tensorboard_dir=config.tensorboard_dir() if config.log.tensorboard else None,
        progress=config.log.progress,
        total_steps=end,
        every=config.log.every,
    )
    if ctx.is_main:
        Path(config.out_dir).mkdir(parents=True, exist_ok=True)
        (Path(config.out_dir) / "config.yaml").write_text(config.to_yaml(), encoding="utf-8")
        n_params = sum(p.numel() for p in module.parameters())
        run_log.message(
            f"{n_params:,} parameters, world size {W}, device {ctx.device}, "
            f"{G}x{S} tokens/step, micro-batch {mb}, accumulation {accum}, steps {start_step}->"
            f"{end}"
        )
        if end < config.steps:
            run_log.message(
                f"data.on_exhausted=stop: the run ends after step {end} of {config.steps}, before a "
                f"source would be reused"
            )

    result = TrainResult(start_step=start_step, step=start_step, resumed_from=resumed_from)
    params = list(module.parameters())
    t_start = time.perf_counter()
    try:
        data = data_plan.source.batches(
            S, mb, seed=config.seed, rank=ctx.rank, world_size=W, start_step=start_step * accum
        )
        for step in range(start_step, end):
            if data_plan.stream_end(step) is not None:  # a streamed source runs out (data.on_exhausted=stop)
                end = checkpointer.total_steps = validator.end_step = run_log.total_steps = data_plan.end_step
                run_log.message(f"data.on_exhausted=stop: a streamed source runs out; the run ends after step {end}")
            if step >= end:
                break
            t0 = time.perf_counter()
            data_plan.announce(step, run_log)
            lr = data_plan.plan.lr_at(step, config.optim)
            loss, n_scored, grad_norm = train_step(module, optimizer, params, data, step, lr, config, ctx, accum, V)
            gn = float(grad_norm)
            time.sleep(config.step_delay_s)
            dt = time.perf_counter() - t0
            step_done = step + 1
            result.step = step_done
            result.losses.append(loss)
            if run_log.should_log(step_done):
                run_log.write(
                    {
                        "step": step_done,
                        "loss": loss,
                        "lr": lr,
                        "grad_norm": gn,
                        "tokens": step_done * G * S,
                        "tokens_per_s": round(G * S / dt, 2),
                        "step_time_s": round(dt, 5),
                        "elapsed_s": round(time.perf_counter() - t_start, 3),
                        "scored_tokens": n_scored,
                        **data_plan.record(step_done),
                    }
                )
            run_log.progress(loss, G * S / dt)
            if not math.isfinite(loss):
                raise FloatingPointError(f"loss is {loss} at step {step_done}")
            if validator.should_run(step_done):
                result.evals.append({**validator.run(step_done), **data_plan.phase_record(step_done)})
                run_log.write(result.evals[-1])
                run_log.message(f"step {step_done}: {_headline(result.evals[-1])}")
            if checkpointer.should_save(step_done):
                state = trainer_state(config, model_config, W, accum, step_done, data_plan.plan, data_plan.mixture)
                result.checkpoint = checkpointer.save(step_done, module.model, optimizer, state)
                run_log.message(f"checkpoint {result.checkpoint}")
    finally:
        run_log.close()

    if return_model:
        result.model = _gather_model(module, model_config, ctx, config)
    return result


def _gather_model(module: DiffusionTrainingModule, model_config, ctx: DistContext, config: TrainConfig):
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    from ..modeling_sumi import SumiForMaskGeneration

    sd = get_model_state_dict(module.model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    if not ctx.is_main:
        return None
    with torch.device("meta"):
        model = SumiForMaskGeneration(model_config)
    model = model.to_empty(device="cpu")
    lora = config.task == "sft" and config.sft.lora_r
    if lora:
        apply_lora(model, config.sft)
    model.load_state_dict(sd)
    if lora:
        merge_lora(model)
    return model.eval()


def read_jsonl(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Records of a run's JSONL log (lines cut by a kill are skipped)."""
    out = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            pass
    return out


__all__ = [
    "train",
    "train_step",
    "build_training_module",
    "enable_activation_checkpointing",
    "evaluate",
    "Validator",
    "trainer_state",
    "TrainResult",
    "read_jsonl",
]
