#!/usr/bin/env bash
# The committed SynthVQA results: every press at 10/5, 5/2.5, 2/1, 1/0.5 (FastV at 100/x), the
# unified press without inner merging, and the 7 stage-1 ablations at 2%, on 700 test items
# (32 frames, 392 px), 12 processes sharing one GPU.
#   bash scripts/eval_testbed.sh [WEIGHTS] [extra vidpress eval options]
# On the device machine (after scripts/device_assets.sh); writes $OUT/synthvqa_testbed.{json,md,png}.
source scripts/device_assets.sh env
WEIGHTS=${1:-src/vidpress/testbed/weights/testbed.safetensors}
shift || true
OUT=${OUT:-/tmp/vpout}
python3 -m vidpress eval --suite synthvqa --weights "$WEIGHTS" --size 700 --frames 32 \
  ${EVAL_GRID-"--ablations"} --workers 12 --progress-every 25 --device cuda \
  --out-dir "$OUT" --name synthvqa_testbed "$@" 2>&1 | grep --line-buffered -v clean_up_tokenization
