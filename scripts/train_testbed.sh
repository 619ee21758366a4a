#!/usr/bin/env bash
# Train the testbed's projector and LM adapters on the GPU (vidpress.testbed.train). The committed
# src/vidpress/testbed/weights/testbed.safetensors came from calls of this script (attempts 5 to 8:
# benchmarks/results/synthvqa_training.md has the exact commands and the records); 80.6% on the
# test split.
#
# On the device machine, after the `put` calls of scripts/device_assets.sh (one per part):
#   bash scripts/train_testbed.sh            # default phases, sized to the time budget
#   bash scripts/train_testbed.sh --phase text:120:... --phase frame:...
#                                            # fixed steps (the record's "reproduce" list)
#   STOP=400 bash scripts/train_testbed.sh --init-weights W ...   # continue from weights W
# Writes $OUT/train/ (weights, train_record.json, log); the per-phase weights go to /root/vpw.
source scripts/device_assets.sh env
OUT=${OUT:-/tmp/vpout}
mkdir -p "$OUT/train" /root/vpw
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
df -h /dev/shm | tail -1
python3 -m vidpress.testbed.train --out "$OUT/train" --workers 10 --stop-after-seconds "${STOP:-470}" --test-items 700 "$@" 2>&1 \
  | grep --line-buffered -v clean_up_tokenization | tee "$OUT/train/train_log.txt"
cp "$OUT/train/testbed.safetensors" /root/vpw/testbed.safetensors
mv "$OUT"/train/phase*.safetensors /root/vpw/  # the device tool returns 8 files at most
