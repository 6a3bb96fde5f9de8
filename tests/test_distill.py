"""Distillation (issue 16 section 2, `task: distill`): the loss against a float64 reference, the
targets against an independent run of the teacher, the cache, a few steps that lower the loss,
exact resume from a checkpoint, export, and recipes that fail with the key named."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from test_ref_loss import ref_loss

from sumi.cli import main
from sumi.training import TrainConfig, read_jsonl, train
from sumi.training.distill import (
    DistillBatch,
    DistillSource,
    DistillTrainingModule,
    TeacherSpec,
    cache_folder,
    teacher_data,
    time_grid,
)

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "src" / "sumi" / "assets" / "models" / "demo"
V = 8192  # the demo tokenizer's, so that an export carries a matching tokenizer


@pytest.fixture(scope="module")
def teacher(tmp_path_factory) -> Path:
    """A random sumi-tiny with the demo model's vocabulary and tokenizer, saved as a model folder. Its
    head puts nearly all the mass on 8 of 16 tokens (which 8: the sign of one hidden unit), so that its
    samples have a structure a student can learn in a few steps."""
    from sumi import SumiConfig, SumiForMaskGeneration

    folder = tmp_path_factory.mktemp("teacher")
    torch.manual_seed(0)
    cfg = SumiConfig.from_preset("sumi-tiny", vocab_size=V, bos_token_id=2, eos_token_id=1, pad_token_id=0)
    model = SumiForMaskGeneration(cfg)
    with torch.no_grad():
        model.model.norm.weight.zero_()
        model.model.norm.weight[0] = 1.0
        model.lm_head.weight.zero_()
        model.lm_head.weight[10:18, 0] = 12.0
        model.lm_head.weight[20:28, 0] = -12.0
    model.save_pretrained(folder)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copyfile(DEMO / name, folder / name)
    return folder


RECIPE = """\
task: distill
model: {{path: {teacher}}}
distill: {{teacher_steps: 8, student_steps: [2, 4], trajectories: 6, val_trajectories: 3, new_tokens: 12,
           generate_batch: 4, generation: {{num_denoising_steps: 4, canvas_length: 24}}}}
data: {{seq_len: 24}}
optim: {{lr: 3.0e-3, min_lr: 3.0e-4, warmup_steps: 0, weight_decay: 0.0}}
batch: {{global_batch_size: 8, micro_batch_size: 4}}
steps: {steps}
seed: 0
device: cpu
num_threads: 1
eval: {{every: {every}, batch_size: 8}}
checkpoint: {{every: 2, keep_last: 0}}
log: {{progress: false}}
"""


def _recipe(tmp_path: Path, teacher: Path, *, steps: int = 6, every: int = 2) -> Path:
    path = tmp_path / "distill.yaml"
    path.write_text(RECIPE.format(teacher=teacher, steps=steps, every=every))
    return path


# ----------------------------------------------------------------------------- the loss
def _ref_ce(logits: torch.Tensor, labels: torch.Tensor, z_loss: float) -> float:
    """Sum over labelled positions of -log softmax(logits)[label] + z_loss * logsumexp^2, in float64 loops."""
    total = 0.0
    for b in range(labels.shape[0]):
        for s in range(labels.shape[1]):
            y = int(labels[b, s])
            if y == -100:
                continue
            row = [float(v) for v in logits[b, s].double()]
            m = max(row)
            lse = m + torch.tensor([v - m for v in row], dtype=torch.float64).exp().sum().log().item()
            total += lse - row[y] + z_loss * lse**2
    return total


@pytest.mark.parametrize("gidd_weight", [0.0, 0.5])
def test_distillation_loss_equals_a_float64_reference_on_a_tiny_batch(gidd_weight):
    """CE from the student's prediction at the teacher's canvas to the teacher's endpoint, at the scored
    positions, z-loss included; with a regulariser, plus w times the GIDD loss (spec §4) of the endpoint
    noised at its free positions."""
    from sumi import SumiConfig, SumiForMaskGeneration

    torch.manual_seed(0)
    model = SumiForMaskGeneration(SumiConfig.from_preset("sumi-tiny", vocab_size=50)).double()
    g = torch.Generator().manual_seed(1)
    B, S, Vt = 3, 10, 50
    free = torch.rand(B, S, generator=g) < 0.8
    free[:, 0] = False  # a prompt
    scored = free & (torch.rand(B, S, generator=g) < 0.7)
    batch = DistillBatch(
        inputs=torch.randint(0, Vt, (B, S), generator=g),
        targets=torch.randint(0, Vt, (B, S), generator=g),
        scored=scored,
        free=free,
        regularise=gidd_weight > 0,
    )
    t = torch.rand(B, 1, generator=g).expand(B, S).contiguous().double()
    replaced = torch.where(torch.rand(B, S, generator=g) < t, torch.randint(0, Vt, (B, S), generator=g), -1)
    inputs = batch.noised(replaced, t)
    got = float(DistillTrainingModule(model, gidd_weight=gidd_weight)(*inputs).detach())

    z_loss = model.config.uniform_diffusion_z_loss_strength
    labels = torch.where(scored, batch.targets, -100)
    want = _ref_ce(model(input_ids=batch.inputs).logits.detach(), labels, z_loss)
    assert batch.num_scored() == int(scored.sum()) > 0
    if gidd_weight:
        z = torch.where(free & (replaced >= 0), replaced, batch.targets)
        assert torch.equal(inputs[0][B:], z)
        assert bool((z[~free] == batch.targets[~free]).all())  # the prompt is never noised
        per_token, valid = ref_loss(model(input_ids=z).logits.detach(), z, labels, t, Vt)
        assert torch.equal(valid, scored)
        want += gidd_weight * float(per_token.sum())
    else:
        assert inputs[0] is batch.inputs and inputs[3] == B
    assert got == pytest.approx(want, rel=1e-6 if gidd_weight else 1e-12)  # the GIDD kernel computes in fp32


# ----------------------------------------------------------------------------- the teacher's trajectories
def test_time_grid_is_the_union_of_the_student_schedules_inside_the_teachers():
    from sumi.diffusion import sampling_schedule

    assert time_grid(128, [8]) == list(range(0, 128, 16))
    assert time_grid(8, [2, 4]) == [0, 2, 4, 6]
    for schedule in ("linear", "cosine"):
        teacher, student = sampling_schedule(128, schedule), sampling_schedule(8, schedule)
        assert torch.allclose(teacher[::16], student, atol=1e-9)


def test_targets_are_the_teachers_trajectory_endpoints(tmp_path, teacher):
    """Recomputed independently: the teacher's generate() with each row's seed, alone, gives the cached
    final canvas, and the canvases its progress callback sees at the grid's steps are the inputs."""
    import sumi

    config = TrainConfig.from_yaml(_recipe(tmp_path, teacher), [f"out_dir={tmp_path / 'run'}"])
    config.validate()
    spec = TeacherSpec.from_config(config)
    data = teacher_data(config, spec, "train", 6)
    assert data.inputs.shape == (6, 4, 24) and data.targets.shape == (6, 24)
    model, _ = sumi.load(str(teacher))
    for row in range(6):
        steps: list[torch.Tensor] = []
        out = model.generate(
            torch.tensor([[2]]),
            seed=[spec.row_seed("train", row)],
            max_new_tokens=12,
            canvas_length=24,
            num_denoising_steps=8,
            progress_callback=lambda info, steps=steps: steps.append(info["z"].clone()),
        )
        assert torch.equal(data.targets[row].long(), out.canvas[0])
        canvases = [None, *steps]  # canvas after step k is canvases[k + 1]; index 0 is the initial one
        for k, j in enumerate([0, 2, 4, 6]):
            if j:
                assert torch.equal(data.inputs[row, k].long(), canvases[j][0])
        free = data.free[row]
        assert not free[0] and not free[13] and not free[14]  # BOS prompt, EOS and BOS anchors
        assert bool(free[1:13].all()) and bool(free[15:].all())
        assert torch.equal(data.answer[row], torch.arange(24).lt(13) & free)
        assert int(data.targets[row, 13]) == 1 and int(data.targets[row, 14]) == 2
    # the initial canvases: BOS then one randint per row (spec §6), from the row's own generator
    g = torch.Generator().manual_seed(spec.row_seed("train", 0))
    init = torch.randint(0, V, (1, 23), generator=g)[0]
    assert torch.equal(data.inputs[0, 0, 1:13].long(), init[:12])


def test_cache_is_reused_and_a_corrupted_chunk_is_generated_again(tmp_path, teacher, caplog):
    config = TrainConfig.from_yaml(_recipe(tmp_path, teacher), [f"out_dir={tmp_path / 'run'}"])
    spec = TeacherSpec.from_config(config)
    first = teacher_data(config, spec, "train", 6)
    folder = cache_folder(config, spec) / "train"
    assert sorted(p.name for p in folder.iterdir()) == [
        "chunk_00000.json",
        "chunk_00000.safetensors",
        "chunk_00001.json",
        "chunk_00001.safetensors",
    ]
    record = json.loads((folder / "chunk_00001.json").read_text())
    assert record["rows"] == [4, 6] and record["key"] == spec.key()
    stamp = (folder / "chunk_00000.safetensors").stat().st_mtime_ns
    raw = bytearray((folder / "chunk_00001.safetensors").read_bytes())
    raw[-1] ^= 0xFF
    (folder / "chunk_00001.safetensors").write_bytes(bytes(raw))
    again = teacher_data(config, spec, "train", 6)
    assert "fails its checksum" in caplog.text
    assert (folder / "chunk_00000.safetensors").stat().st_mtime_ns == stamp  # reused, not regenerated
    assert torch.equal(first.inputs, again.inputs) and torch.equal(first.targets, again.targets)
    # another teacher setting: another folder, the first one untouched
    other = TeacherSpec.from_config(config.with_overrides(["distill.teacher_generation={temperature: 0.5}"]))
    assert other.key() != spec.key()


def test_pairs_follow_a_seeded_permutation_and_cover_every_pair_once_per_epoch(tmp_path, teacher):
    config = TrainConfig.from_yaml(_recipe(tmp_path, teacher), [f"out_dir={tmp_path / 'run'}"])
    data = teacher_data(config, TeacherSpec.from_config(config), "train", 6)
    source = DistillSource(data)
    assert len(source) == 24
    seen = [source._pair(j, seed=0) for j in range(24)]
    assert sorted(seen) == list(range(24)) and seen != list(range(24))
    assert [source._pair(j, seed=0) for j in range(24)] == seen  # a function of (seed, row)
    batch = source.get_batch(1, 24, 4, seed=0, rank=1, world_size=2)  # global rows 12..15
    for i, q in enumerate(seen[12:16]):
        assert torch.equal(batch.inputs[i], data.inputs[q // 4, q % 4].long())
        assert torch.equal(batch.targets[i], data.targets[q // 4].long())
    answer_only = DistillSource(data, score="answer").pairs(torch.tensor([0]))
    assert int(answer_only.scored.sum()) == 12


# ----------------------------------------------------------------------------- training
def test_a_few_steps_lower_the_heldout_distillation_loss(tmp_path, teacher):
    result = train(_recipe(tmp_path, teacher, steps=8, every=4), [f"out_dir={tmp_path / 'run'}"])
    log = read_jsonl(tmp_path / "run" / "train_log.jsonl")
    evals = [r for r in log if r.get("kind") == "eval"]
    assert [e["step"] for e in evals] == [4, 8]
    assert {"val_distill_ce", "val_distill_ce/k0", "val_distill_ce/k6", "val_tokens"} <= set(evals[0])
    assert evals[0]["val_tokens"] == 3 * 4 * 21  # held-out pairs x free positions (24 - prompt - anchors)
    losses = result.losses
    assert losses[-1] < 0.9 * losses[0], losses
    assert evals[-1]["val_distill_ce"] < evals[0]["val_distill_ce"]


def test_resume_from_a_checkpoint_gives_the_same_losses(tmp_path, teacher):
    """N steps straight vs N/2 steps' checkpoint + --resume for the rest (the teacher cache regenerated
    from scratch in the second run folder): identical losses, grad norms and evals."""
    recipe = _recipe(tmp_path, teacher, steps=4, every=2)
    assert main(["distill", str(recipe), f"out_dir={tmp_path / 'base'}"]) == 0
    base = read_jsonl(tmp_path / "base" / "train_log.jsonl")
    half = tmp_path / "half" / "checkpoints"
    half.mkdir(parents=True)
    shutil.copytree(tmp_path / "base" / "checkpoints" / "step_0000002", half / "step_0000002")
    assert main(["distill", str(recipe), f"out_dir={tmp_path / 'half'}", "--resume"]) == 0
    resumed = read_jsonl(tmp_path / "half" / "train_log.jsonl")

    def steps(records, key):
        return [(r["step"], r[key]) for r in records if key in r and r["step"] > 2]

    assert steps(resumed, "loss") == steps(base, "loss")  # exact, not approximately
    assert steps(resumed, "grad_norm") == steps(base, "grad_norm")
    assert steps(resumed, "val_distill_ce") == steps(base, "val_distill_ce")
    assert [s for s, _ in steps(resumed, "loss")] == [3, 4]


def test_export_is_a_loadable_student_with_its_tokenizer_and_few_step_settings(tmp_path, teacher, capsys):
    import sumi

    recipe = _recipe(tmp_path, teacher, steps=2, every=0)
    out = tmp_path / "student"
    assert (
        main(["distill", str(recipe), f"out_dir={tmp_path / 'run'}", "--export", str(out), "--dtype", "bfloat16"]) == 0
    )
    assert "exported" in capsys.readouterr().out
    gc = json.loads((out / "generation_config.json").read_text())
    assert gc["num_denoising_steps"] == 4 and gc["canvas_length"] == 24
    model, tok = sumi.load(str(out))
    assert tok is not None and tok.bos_token_id == 2
    assert model.config.num_hidden_layers == 2  # same architecture as the teacher
    seq = model.generate(torch.tensor([[2]]), max_new_tokens=8, seed=0)
    assert seq.num_forwards == 4
    # exporting again replaces the previous export (a model folder with a tokenizer)
    assert main(["distill", str(recipe), f"out_dir={tmp_path / 'run'}", "--resume", "--export", str(out)]) == 0
    # `sumi export` of the same checkpoint reads the task from it: the same folder
    assert main(["export", str(tmp_path / "run" / "checkpoints"), str(tmp_path / "again")]) == 0
    for name in ("generation_config.json", "tokenizer.json", "config.json"):
        assert (tmp_path / "again" / name).read_text() == (out / name).read_text()


def test_teacher_only_fills_the_cache_that_training_then_reads(tmp_path, teacher, capsys):
    recipe = _recipe(tmp_path, teacher)
    assert main(["distill", str(recipe), f"out_dir={tmp_path / 'run'}", "--teacher-only"]) == 0
    assert "teacher trajectories: 6 train, 3 validation" in capsys.readouterr().out
    chunks = sorted((tmp_path / "run" / "teacher").glob("*/*/chunk_*.safetensors"))
    assert [c.parent.name for c in chunks] == ["train", "train", "validation"]
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_dry_run_describes_the_teacher_work(tmp_path, teacher, capsys):
    assert main(["distill", str(_recipe(tmp_path, teacher)), "--dry-run"]) == 0
    text = capsys.readouterr().out
    assert "time grid: 4 teacher steps [0, 2, 4, 6]" in text
    assert "6 + 3 trajectories = 72 row-forwards" in text


@pytest.mark.parametrize(
    "override, key",
    [
        ("distill.student_steps=[3]", "distill.student_steps"),
        ("distill.student_steps=[]", "distill.student_steps"),
        ("distill.teacher_generation={sampler: predictor_corrector}", "distill.teacher_generation"),
        ("distill.teacher_generation={seed: 3}", "distill.teacher_generation"),
        ("distill.score=everything", "distill.score"),
        ("distill.new_tokens=30", "distill.new_tokens"),
        ("distill.generation={num_denoising_steps: 3}", "distill.generation"),
        ("distill.generation={schedule: cosine}", "distill.generation"),
        ("distill.generation={bogus: 1}", "distill.generation"),
        ("distill.gidd_weight=-1", "distill.gidd_weight"),
        ("distill.trajectories=0", "distill.trajectories"),
        ("model.path=null", "distill.teacher"),
    ],
)
def test_bad_distill_recipes_fail_naming_the_key(tmp_path, teacher, capsys, override, key):
    assert main(["distill", str(_recipe(tmp_path, teacher)), override, "model.preset=sumi-tiny", "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert key in err and "Traceback" not in err


def test_unknown_distill_key_and_missing_teacher_folder_are_one_line_errors(tmp_path, teacher, capsys):
    assert main(["distill", str(_recipe(tmp_path, teacher)), "distill.techer=x", "--dry-run"]) == 2
    assert "did you mean 'teacher'" in capsys.readouterr().err
    recipe = _recipe(tmp_path, teacher)
    assert main(["distill", str(recipe), f"distill.teacher={tmp_path / 'nowhere'}", f"out_dir={tmp_path / 'r'}"]) == 2
    assert "is not a model folder" in capsys.readouterr().err


# ----------------------------------------------------------------------------- the bundled student
def test_bundled_demo_fast_is_the_demo_architecture_with_its_few_step_settings():
    """`sumi.load("demo-fast")`: the demo model distilled by recipes/demo-fast.yaml (docs/distillation.md),
    at most 30 MB, bf16 weights, sampling with 8 forwards by default (ancestral, top-p 0.8: the setting
    that met the 8-forward goal of issue 16 on two seed sets, benchmarks/results/bench_sampling_demo_fast_cpu2.md)."""
    import sumi
    from sumi.loading import BUNDLED_DIR

    folder = BUNDLED_DIR / "demo-fast"
    assert sum(f.stat().st_size for f in folder.iterdir()) <= 30 * 2**20
    assert json.loads((folder / "config.json").read_text())["dtype"] == "bfloat16"
    gc = json.loads((folder / "generation_config.json").read_text())
    assert {k: gc[k] for k in ("sampler", "num_denoising_steps", "greedy_tail", "top_p", "canvas_length")} == {
        "sampler": "ancestral",
        "num_denoising_steps": 8,
        "greedy_tail": 0,
        "top_p": 0.8,
        "canvas_length": 256,
    }
    shape = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "vocab_size")
    student, teacher = (json.loads((f / "config.json").read_text()) for f in (folder, DEMO))
    assert [student[k] for k in shape] == [teacher[k] for k in shape]
    model, tok = sumi.load("demo-fast")
    out = model.generate(torch.tensor([[tok.bos_token_id]]), max_new_tokens=16, seed=0)
    assert out.num_forwards == 8 and out.sequences.shape[1] <= 17
