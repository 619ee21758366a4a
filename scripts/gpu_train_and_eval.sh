#!/usr/bin/env bash
# One device call: train the testbed (scripts/train_testbed.sh), score the uncompressed model on
# the 700 test items, then as much of the committed SynthVQA grid (scripts/eval_testbed.sh) as the
# time left allows (the evaluation stops between items; the whole call ends within LIMIT seconds,
# 600 being the device tool's limit per command).
#   bash scripts/gpu_train_and_eval.sh [train options...]
START=$(date +%s)
LIMIT=${LIMIT:-580}
OUT=${OUT:-/tmp/vpout}
bash scripts/train_testbed.sh "$@" || exit 1
W="$OUT/train/testbed.safetensors"
EVAL_GRID= bash scripts/eval_testbed.sh "$W" --presses none --name synthvqa_testbed_uncompressed \
  --time-limit 100 --no-plot
LEFT=$(( LIMIT - ($(date +%s) - START) - 40 ))
echo "grid evaluation time limit: ${LEFT} s"
[ "$LEFT" -gt 60 ] && bash scripts/eval_testbed.sh "$W" --time-limit "$LEFT"
exit 0
