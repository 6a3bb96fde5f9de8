#!/usr/bin/env bash
# Train the GPU version of the bundled demo model within a wall-clock budget (issue 4).
#   BUDGET_S=300 bash scripts/train_demo_gpu.sh
# 1. a 30-step calibration run measures the step time on this machine;
# 2. the real run gets steps = BUDGET_S / step time (so the WSD decay still happens at the end);
# 3. the last checkpoint is exported as a bf16 HF folder, and one sample is printed.
# Env: BUDGET_S (training seconds, default 300), MAX_STEPS (cap, default 6000), TIMEOUT_S, RECIPE (default recipes/demo-gpu.yaml),
#      EXTRA (more overrides, e.g. "device=cpu dtype=float32"), DEST (export folder, default $OUT or runs/demo-gpu/export).
set -euo pipefail
BUDGET_S=${BUDGET_S:-300}
RECIPE=${RECIPE:-recipes/demo-gpu.yaml}
EXTRA=${EXTRA:-}
DEST=${DEST:-${OUT:-runs/demo-gpu/export}}
PY=${PY:-python3}
RUN_DIR=$($PY - "$RECIPE" $EXTRA <<'PY'
import sys
from sumi.training import TrainConfig
print(TrainConfig.from_yaml(sys.argv[1], sys.argv[2:]).out_dir)
PY
)
CALIB_DIR=$(mktemp -d)
echo "== calibration (30 steps) -> $CALIB_DIR"
$PY -m sumi.train "$RECIPE" $EXTRA steps=30 out_dir="$CALIB_DIR" eval.every=0 eval.at_end=false \
    checkpoint.every=0 checkpoint.at_end=false log.every=1
STEPS=$($PY - "$CALIB_DIR/train_log.jsonl" "$BUDGET_S" "${MAX_STEPS:-6000}" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if '"loss"' in l]
t = statistics.median(r["step_time_s"] for r in rows[10:])
steps = min(int(sys.argv[3]), max(50, int(float(sys.argv[2]) / t) // 10 * 10))
print(f"step time {t:.4f} s -> {steps} steps", file=sys.stderr)
print(steps)
PY
)
rm -rf "$CALIB_DIR" "$RUN_DIR"
echo "== training $STEPS steps"
# a hard stop (default 1.25x the budget + 30 s): the newest checkpoint is still exported below
timeout "${TIMEOUT_S:-$((BUDGET_S * 5 / 4 + 30))}" $PY -m sumi.train "$RECIPE" $EXTRA steps="$STEPS" || echo "training stopped early (rc $?)"
echo "== export -> $DEST"
$PY -m sumi.train --export "$RUN_DIR/checkpoints" "$DEST/model" --dtype bfloat16
cp "$RUN_DIR/train_log.jsonl" "$DEST/"
cp runs/demo/tokenizer/tokenizer.json runs/demo/tokenizer/tokenizer_config.json "$DEST/model/"
# the bundled model's sampling defaults: a 256-token canvas, 128 ancestral steps
$PY - "$DEST/model/generation_config.json" <<'PY'
import json, sys
g = json.load(open(sys.argv[1]))
g.update(canvas_length=256, num_denoising_steps=128, sampler="ancestral")
json.dump(g, open(sys.argv[1], "w"), indent=2)
PY
echo "== samples"
for sampler in ancestral adaptive; do
  $PY -c 'import sys; from sumi.cli import main; sys.exit(main())' generate --model "$DEST/model" --sampler $sampler \
      --canvas-length 256 --max-new-tokens 200 --steps 128 --seed 0 --no-progress "def read_config(path):" "ROMEO:" || true
done
