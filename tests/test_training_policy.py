"""Each training component answers for its own policy: when to save, validate and log."""

import pytest

from sumi.training.checkpoint import Checkpointer
from sumi.training.config import ConfigError, TrainConfig
from sumi.training.metrics import RunLogger
from sumi.training.trainer import Validator


def test_checkpoints_every_n_steps_and_at_the_end(tmp_path):
    both = Checkpointer(tmp_path, every=3, at_end=True, keep_last=0, total_steps=10)
    assert [s for s in range(1, 11) if both.should_save(s)] == [3, 6, 9, 10]
    scheduled_only = Checkpointer(tmp_path, every=3, at_end=False, keep_last=0, total_steps=10)
    assert [s for s in range(1, 11) if scheduled_only.should_save(s)] == [3, 6, 9]
    end_only = Checkpointer(tmp_path, every=0, at_end=True, keep_last=0, total_steps=10)
    assert [s for s in range(1, 11) if end_only.should_save(s)] == [10]


def test_validation_follows_its_schedule_and_is_off_without_data():
    config = TrainConfig.from_dict({"steps": 10, "eval": {"every": 4, "at_end": True}})
    with_data = Validator(module=None, sources={"": object()}, config=config, ctx=None)
    assert [s for s in range(1, 11) if with_data.should_run(s)] == [4, 8, 10]
    without = Validator(module=None, sources={}, config=config, ctx=None)
    assert not any(without.should_run(s) for s in range(1, 11))
    never = TrainConfig.from_dict({"steps": 10, "eval": {"every": 0, "at_end": False}})
    assert not any(Validator(None, {"": object()}, never, None).should_run(s) for s in range(1, 11))


def test_training_records_every_n_steps_and_the_last(tmp_path):
    log = RunLogger(
        tmp_path / "log.jsonl",
        enabled=False,
        start_step=0,
        tensorboard_dir=None,
        progress=False,
        total_steps=10,
        every=4,
    )
    assert [s for s in range(1, 11) if log.should_log(s)] == [4, 8, 10]


@pytest.mark.parametrize("value", [-0.5, float("inf")])
def test_step_delay_must_be_a_finite_non_negative_number(value):
    with pytest.raises(ConfigError, match="step_delay_s"):
        TrainConfig.from_dict({"model": {"preset": "sumi-tiny"}, "step_delay_s": value}).validate()
