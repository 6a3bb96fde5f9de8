"""Training uniform diffusion language models: FSDP2, DCP checkpoints, recipes.

    from sumi.training import TrainConfig, train, export_checkpoint
    config = TrainConfig.from_yaml("recipes/tiny-cpu.yaml", ["steps=50"])
    result = train(config)                       # 1 process, or under torchrun: N processes
    export_checkpoint(config.checkpoint_dir(), "my-model")   # a normal HF folder
    export_model(config.checkpoint_dir(), "my-model")        # the same, plus tokenizer and generation
                                                             # settings for an SFT or distillation run

Command line: ``sumi train RECIPE.yaml [key.sub=value ...] [--resume] [--dry-run]``,
``torchrun --nproc_per_node=N -m sumi.training RECIPE.yaml``.
"""

from .checkpoint import (
    CheckpointError,
    export_checkpoint,
    find_latest_checkpoint,
    list_checkpoints,
    read_trainer_state,
    verify_checkpoint,
)
from .config import (
    BatchSection,
    CheckpointSection,
    ConfigError,
    DataSection,
    EvalSection,
    LogSection,
    ModelSection,
    OptimSection,
    TrainConfig,
)
from .dryrun import dry_run_report, memory_per_rank, parameter_counts
from .export import export_model
from .loss import DiffusionTrainingModule, fused_head_loss
from .noise import StepNoise, draw_step_noise
from .optim import build_optimizer, lr_at, param_groups
from .sources import BatchSource, SyntheticSource, make_source
from .trainer import TrainResult, evaluate, read_jsonl, train

__all__ = [
    "TrainConfig",
    "ModelSection",
    "DataSection",
    "OptimSection",
    "BatchSection",
    "EvalSection",
    "CheckpointSection",
    "LogSection",
    "ConfigError",
    "train",
    "evaluate",
    "TrainResult",
    "read_jsonl",
    "export_checkpoint",
    "export_model",
    "find_latest_checkpoint",
    "list_checkpoints",
    "verify_checkpoint",
    "read_trainer_state",
    "CheckpointError",
    "dry_run_report",
    "memory_per_rank",
    "parameter_counts",
    "DiffusionTrainingModule",
    "fused_head_loss",
    "StepNoise",
    "draw_step_noise",
    "lr_at",
    "param_groups",
    "build_optimizer",
    "BatchSource",
    "SyntheticSource",
    "make_source",
]
