#!/usr/bin/env bash
# Train the testbed's projector and LM adapters on the GPU (vidpress.testbed.train). Weights that
# pass the accuracy bar go to src/vidpress/testbed/weights/testbed.safetensors; none do yet
# (benchmarks/results/synthvqa_training.md has both attempts and their records).
#
# On the device machine, after the three `put` calls of scripts/device_assets.sh:
#   bash scripts/train_testbed.sh            # default phases, the video phase sized to 230 s
#   bash scripts/train_testbed.sh --phase text:150:lr=0:lr_lora=0.001 --phase video:274
#                                            # fixed steps (the record's "reproduce" list)
# Writes $OUT/train/ (weights, train_record.json, log); the per-phase weights go to /root/vpw.
source scripts/device_assets.sh env
OUT=${OUT:-/tmp/vpout}
mkdir -p "$OUT/train" /root/vpw
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
df -h /dev/shm | tail -1
python3 -m vidpress.testbed.train --out "$OUT/train" --workers 10 --stop-after-seconds 330 --test-items 700 "$@" 2>&1 \
  | grep --line-buffered -v clean_up_tokenization | tee "$OUT/train/train_log.txt"
cp "$OUT/train/testbed.safetensors" /root/vpw/testbed.safetensors
mv "$OUT"/train/phase*.safetensors /root/vpw/  # the device tool returns 8 files at most
