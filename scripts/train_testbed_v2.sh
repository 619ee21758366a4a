#!/usr/bin/env bash
# Testbed v2 (issue 14): continue the committed weights on the generic-variation mixture (the "mix"
# phase of vidpress.testbed.train; src/vidpress/testbed/train_mixture.py says what it draws:
# 1-64-frame videos at 224-448 px, single images on the stock AnyRes path, multi-image items,
# varied phrasings and backgrounds, a quarter of the batches in the original 32-frame 392 px
# layout). Protocol and what is (not) calibrated: benchmarks/results/testbed_v2_protocol.md.
#
# On the device machine, after the `put` calls of scripts/device_assets.sh (one per part), ONE call
# (about 60 s setup and decoding, BUDGET s of training, validation and export; hard stop STOP):
#   bash scripts/train_testbed_v2.sh
# Then the calibration table, a second call on the same (warm) machine (~11 configurations x 700
# items; the full 44-configuration grid took 402 s on an H100):
#   EVAL_GRID="" bash scripts/eval_testbed.sh /root/vpw/testbed_v2.safetensors \
#     --presses fastv,visionzip --retentions 10/5,5/2.5 --without-no-merge \
#     --config fastvid@2 --config fastvid@1 --config holitom@2/1 --config holitom@1/0.5 \
#     --config unified@2/1 --config unified@1/0.5 --config uniform@2 --config framedrop@2 \
#     --time-limit 480 --dtype bfloat16 --workers 14 --name synthvqa_testbed_v2
# (a fresh machine has no /root/vpw: pass the returned $OUT/train/testbed.safetensors copied into
# the working tree instead). PHASE replaces the mix phase (e.g. PHASE=mix:auto:keep=0.4:...);
# extra options go to the trainer.
# Writes $OUT/train/ (testbed.safetensors, train_record.json, train_log.txt).
source scripts/device_assets.sh env
OUT=${OUT:-/tmp/vpout}
mkdir -p "$OUT/train" /root/vpw
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
STRESS=position+position+position+motion+motion+count+count+needle_color+needle_shape+order+scene
python3 -m vidpress.testbed.train --out "$OUT/train" --workers 12 \
  --stop-after-seconds "${STOP:-430}" --budget-seconds "${BUDGET:-280}" --test-items 0 \
  --init-weights src/vidpress/testbed/weights/testbed.safetensors --vision-feature-layer 1,9 \
  --warmup 30 --phase "${PHASE:-mix:auto:lr=0.001:lr_lora=0.0005:keep=0.25:images=0.15:multi=0.15:families=$STRESS}" \
  "$@" 2>&1 | grep --line-buffered -v clean_up_tokenization | tee "$OUT/train/train_log.txt"
cp "$OUT/train/testbed.safetensors" /root/vpw/testbed_v2.safetensors
rm -f "$OUT"/train/phase*.safetensors  # the same weights as testbed.safetensors (one phase)
