"""lmms-eval plugin: evaluate any supported checkpoint under a vidpress press, no fork of lmms-eval.

Registered through lmms-eval's model entry points (group ``lmms_eval.models``, read by
``lmms_eval.models.registry_v2.ModelRegistryV2.load_entrypoint_manifests``; lmms-eval 0.7.3)::

    [project.entry-points."lmms_eval.models"]
    vidpress = "vidpress.integrations.lmms_eval:manifests"

which makes one model name per family (``Family.lmms_eval_model``; the model classes are
derived from ``adapters.registry``) available::

    python -m lmms_eval --model vidpress_llava_onevision \\
        --model_args pretrained=DIR,press=unified,retention=0.02 --tasks ...
    python -m lmms_eval --model vidpress_qwen2_5_vl \\
        --model_args pretrained=DIR,press=unified,retention=0.02 --tasks ...

``model_args``: ``pretrained`` (a local checkpoint folder; the vidpress testbed counts as
LLaVA-OneVision), ``press`` (a short name of ``vidpress.PRESSES`` or ``none``), ``retention``,
any other field of that press (``inner_keep=0.5,inner_layer=18,tau=0.7``...), ``num_frames``,
``fps`` (Qwen2.5-VL), ``max_pixels`` (Qwen2.5-VL), ``max_new_tokens`` (default for generation),
``device`` and ``dtype``. Video frames are decoded and sampled by ``vidpress.inference`` exactly
as ``vidpress run`` does; the context lmms-eval builds is the user turn of the model's chat
template. Requests are served one at a time (batch size 1).

- ``generate_until``: greedy decoding with the press attached; ``until`` strings cut the answer.
  Each answer is wrapped in lmms-eval's ``GenerationResult`` with its token counts.
- ``loglikelihood`` (multiple-choice tasks): one compressed prefill of context + continuation; the
  continuation's log-probabilities are read from the last rows of the (shorter) output. Requests
  that share a context and whose continuations are single tokens share one prefill. As lmms-eval's
  own models do, the value returned is the *loss* (negative log-likelihood of the continuation,
  summed over its tokens): lmms-eval 0.7.3's multiple-choice scoring takes the argmin. Each
  (loss, is_greedy) pair is wrapped in lmms-eval's ``GenerationResult``, because 0.7.3's
  ``unwrap_generation_output`` turns a bare tuple into its string.

Several processes (``torchrun --nproc_per_node N -m lmms_eval ...``, ``accelerate launch
--num_processes N -m lmms_eval ...``): each process loads the model on its own device (a CUDA
``device``, ``auto`` included, becomes ``cuda:LOCAL_RANK``, as lmms-eval's own models bind ranks;
``cpu`` puts every process on the CPU) and joins the launch's process group (NCCL on GPUs, gloo on
the CPU); ``rank`` and ``world_size`` are the group's. lmms-eval's evaluator gives each rank its
share of the documents and gathers the logged samples and metrics on rank 0.

Token counts: every result carries lmms-eval's ``TokenCounts`` (``lmms_eval.api.instance``; the
evaluator's ``unwrap_generation_output`` takes them from the ``GenerationResult``, logs them per
sample as ``token_counts`` and sums them in its efficiency summary):

- ``input_tokens``: the tokens the LLM received for the request, i.e. the compressed prompt: its
  text tokens plus the visual tokens the press kept (``run.stats``: stage 1; an inner stage
  shortens it further from layer K on, which this number does not show). Without a press, the
  whole prompt. For ``loglikelihood``, the prefill that scored the request (with a multi-token
  continuation, the continuation included); requests sharing one prefill each report it.
- ``output_tokens`` (``generate_until`` only): the tokens generated, before ``until`` cuts the
  text.

``integrations.synthvqa_task.export_synthvqa_task`` writes a local lmms-eval task from SynthVQA
items.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import torch

from vidpress.adapters.family import Family
from vidpress.adapters.registry import FAMILIES
from vidpress.presses import PAPER_PRESS

PRESS_KEYS = ("press", "retention")
RESERVED = {"batch_size", "max_batch_size"}
PROCESS_GROUP_TIMEOUT = timedelta(hours=24)  # ranks wait at barriers for the slowest one


def manifests():
    """The entry point's payload: one ``ModelManifest`` per model name."""
    from lmms_eval.models.registry_v2 import ModelManifest

    return [
        ModelManifest(model_id=model_id, simple_class_path=f"{__name__}.{cls}")
        for model_id, cls in MODEL_IDS.items()
    ]


def _lmms_base():
    """lmms-eval's model base class; ``object`` when lmms-eval is not installed."""
    try:
        from lmms_eval.api.model import lmms
    except ImportError:
        return object
    return lmms


class _VidpressLMM(_lmms_base()):
    """Shared implementation; the subclass of a family (``model_class``) fixes its model name and
    the families it accepts."""

    model_id: str = ""
    families: tuple[str, ...] = ()
    is_simple = True

    def __init__(
        self,
        pretrained: str,
        press: str = PAPER_PRESS,
        retention: float | None = None,
        num_frames: int | None = None,
        fps: float | None = None,
        max_pixels: int | None = None,
        max_new_tokens: int = 32,
        device: str | None = "auto",
        dtype: str = "auto",
        **kwargs,
    ) -> None:
        super().__init__()
        from vidpress import loading
        from vidpress.presses.settings import make_press, with_options

        for key in RESERVED:
            kwargs.pop(key, None)
        family, _ = loading.inspect_model_dir(pretrained)
        if family not in self.families:
            raise ValueError(
                f"{self.model_id} takes {' or '.join(self.families)} checkpoints; {pretrained} is "
                f"{family}"
            )
        if retention is not None:
            kwargs["retention"] = retention
        options = [f"{key}={value}" for key, value in kwargs.items()]
        self.press = make_press(with_options(press, options))
        world_size = int(os.environ.get("WORLD_SIZE", 1))
        device_ = process_device(device, int(os.environ.get("LOCAL_RANK", 0)), world_size)
        if world_size > 1:
            self._join_process_group(device_)
        self.loaded = loading.load_model(pretrained, device_, dtype)
        self.num_frames = num_frames
        self.fps = fps
        self.max_pixels = max_pixels
        self.max_new_tokens = int(max_new_tokens)
        self.stats: list = []  # run.stats entry of every compressed request (None: no press)
        from vidpress.provenance import provenance

        self.provenance = provenance(press=self.press, frames=num_frames, model=str(pretrained))

    def _join_process_group(self, device: torch.device) -> None:
        """Join the launch's process group and take its rank and size.

        ``python -m lmms_eval`` has made the group already (its ``Accelerator``) and gathers
        through ``torch.distributed``; the ``Accelerator`` made here then reuses that state.
        Called from Python (``simple_evaluate``), the evaluator gathers through
        ``self.accelerator``, whose group this one starts: on the CPU, gloo (``cpu=True``: without
        it accelerate counts one process there)."""
        from accelerate import Accelerator, InitProcessGroupKwargs
        from loguru import logger

        self.accelerator = Accelerator(
            cpu=device.type == "cpu",
            kwargs_handlers=[InitProcessGroupKwargs(timeout=PROCESS_GROUP_TIMEOUT)],
        )
        self._rank = torch.distributed.get_rank()
        self._world_size = torch.distributed.get_world_size()
        logger.info(f"vidpress: rank {self._rank} of {self._world_size} on {device}")

    # lmms-eval reads these
    @property
    def device(self):
        return self.loaded.device

    @property
    def model(self):
        return self.loaded.model

    @property
    def tokenizer(self):
        return self.loaded.tokenizer

    @property
    def batch_size(self) -> int:
        return 1

    def _video(self, request) -> str:
        _, _, doc_to_visual, doc_id, task, split = request.args
        visuals = doc_to_visual(self.task_dict[task][split][doc_id])
        videos = [v for v in (visuals or []) if isinstance(v, (str, Path))]
        if len(videos) != 1:
            raise ValueError(
                f"vidpress's lmms-eval models take exactly one video file per request; task "
                f"{task} doc {doc_id} gave {visuals!r}"
            )
        return str(videos[0])

    def _prepare(self, video: str, context: str):
        """The request's inputs; a video with fewer frames than ``num_frames`` gives all of them
        (a benchmark's short clips do not stop the run), with a note on stderr."""
        from vidpress.inference import prepare, print_notes

        prepared = prepare(
            self.loaded,
            video,
            context,
            num_frames=self.num_frames,
            fps=self.fps,
            max_pixels=self.max_pixels,
            cap_frames=True,
        )
        print_notes(prepared.notes)
        return prepared

    def _forward(self, inputs: dict) -> tuple[torch.Tensor, int]:
        """Logits [1, L', V] of one prefill with the press attached, and the number of tokens
        the LLM received."""
        model = self.loaded.model
        prompt_tokens = int(inputs["input_ids"].shape[1])
        with torch.inference_mode():
            if self.press is None:
                return model(**inputs).logits, prompt_tokens
            with self.press(model) as run:
                logits = model(**inputs).logits
        self.stats.append(run.stats[-1])
        return logits, llm_input_tokens(prompt_tokens, run.stats[-1])

    def _continuation_ids(self, text: str) -> list[int]:
        ids = self.loaded.tokenizer(text, add_special_tokens=False)["input_ids"]
        if not ids:
            raise ValueError(f"the continuation {text!r} is empty after tokenization")
        return ids

    def loglikelihood(self, requests) -> list:
        from tqdm import tqdm

        results: list = [None] * len(requests)
        groups: dict[tuple, list[int]] = {}
        for i, request in enumerate(requests):
            context, _, _, doc_id, task, split = request.args
            groups.setdefault((task, split, doc_id, context), []).append(i)
        bar = tqdm(total=len(requests), disable=self.rank != 0, desc="vidpress loglikelihood")
        for (_, _, _, context), members in groups.items():
            video = self._video(requests[members[0]])
            prepared = self._prepare(video, context)
            conts = [self._continuation_ids(requests[i].args[1]) for i in members]
            if all(len(c) == 1 for c in conts):
                logits, received = self._forward(prepared.inputs)
                last = torch.log_softmax(logits[0, -1].float(), dim=-1)
                best = int(last.argmax())
                for i, cont in zip(members, conts, strict=True):
                    results[i] = _result((-float(last[cont[0]]), best == cont[0]), received)
            else:
                for i, cont in zip(members, conts, strict=True):
                    loss, greedy, received = self._score(prepared.inputs, cont)
                    results[i] = _result((loss, greedy), received)
            bar.update(len(members))
        bar.close()
        return results

    def _score(self, inputs: dict, cont: list[int]) -> tuple[float, bool, int]:
        """Loss (negative log-probability) of ``cont`` after the prompt, whether it is the
        greedy continuation, and the number of tokens the LLM received."""
        ids = inputs["input_ids"]
        tail = torch.tensor([cont], dtype=ids.dtype, device=ids.device)
        full = dict(inputs)
        full["input_ids"] = torch.cat([ids, tail], dim=1)
        full["attention_mask"] = torch.ones_like(full["input_ids"])
        if "mm_token_type_ids" in full:
            full["mm_token_type_ids"] = torch.cat(
                [inputs["mm_token_type_ids"], torch.zeros_like(tail, dtype=torch.int)], dim=1
            )
        logits, received = self._forward(full)
        rows = logits[0, -len(cont) - 1 : -1].float()  # the rows predicting each continuation token
        logp = torch.log_softmax(rows, dim=-1)
        target = tail[0]
        total = -float(logp.gather(1, target[:, None]).sum())
        greedy = bool((rows.argmax(dim=-1) == target).all())
        return total, greedy, received

    def generate_until(self, requests) -> list:
        from tqdm import tqdm

        from vidpress.inference import generate

        out = []
        bar = tqdm(total=len(requests), disable=self.rank != 0, desc="vidpress generate")
        for request in requests:
            context, gen_kwargs = request.args[0], dict(request.args[1] or {})
            prepared = self._prepare(self._video(request), context)
            limit = int(gen_kwargs.get("max_new_tokens", self.max_new_tokens))
            answer = generate(self.loaded, prepared, self.press, max_new_tokens=limit)
            if answer.stats is not None:
                self.stats.append(answer.stats)
            text = answer.text
            until = gen_kwargs.get("until") or []
            for stop in [until] if isinstance(until, str) else until:
                if stop:
                    text = text.split(stop)[0]
            received = llm_input_tokens(prepared.prompt_tokens, answer.stats)
            out.append(_result(text, received, answer.new_tokens))
            self.cache_hook.add_partial("generate_until", (context, gen_kwargs), text)
            bar.update(1)
        bar.close()
        return out

    def generate_until_multi_round(self, requests) -> list[str]:
        raise NotImplementedError("vidpress's lmms-eval models do not support multi-round tasks")


def process_device(device: str | None, local_rank: int, world_size: int) -> torch.device:
    """The device one process of a ``world_size``-process launch loads the model on: ``device``
    resolved as ``vidpress run`` does; under several processes a CUDA device is this process's
    GPU, ``cuda:local_rank``."""
    from vidpress.loading import resolve_device

    resolved = resolve_device(device or "auto")
    if world_size > 1 and resolved.type == "cuda":
        return torch.device("cuda", local_rank)
    return resolved


def llm_input_tokens(prompt_tokens: int, stats) -> int:
    """Tokens the LLM receives for a prompt of ``prompt_tokens`` tokens: its text tokens plus the
    visual tokens the press kept (``stats``: its ``run.stats`` entry; None: no press, all)."""
    if stats is None:
        return prompt_tokens
    return prompt_tokens - stats.tokens_in[0] + stats.kept_outer[0]


def _result(value, input_tokens: int, output_tokens: int | None = None):
    """One request's answer (text, or (loss, is_greedy): a bare tuple would be turned into its
    string by lmms-eval 0.7.3's ``unwrap_generation_output``) with its token counts."""
    from lmms_eval.api.instance import GenerationResult, TokenCounts

    counts = TokenCounts(input_tokens=input_tokens, output_tokens=output_tokens)
    return GenerationResult(text=value, token_counts=counts)


def ll_value(result) -> tuple[float, bool]:
    """The (loss, is_greedy) pair of a ``loglikelihood`` result."""
    return tuple(result.text)


def model_class(family: Family) -> type:
    """The lmms-eval model of ``family``: ``Vidpress`` + its transformers class name without
    ``ForConditionalGeneration``, taking the checkpoints of every family of its model type."""
    served = tuple(f.name for f in FAMILIES.values() if f.model_type == family.model_type)
    name = "Vidpress" + family.model_class.removesuffix("ForConditionalGeneration")
    doc = f"``{family.lmms_eval_model}``: {' or '.join(served)} checkpoints under a vidpress press."
    attributes = {"__doc__": doc, "__module__": __name__, "__qualname__": name}
    attributes.update(model_id=family.lmms_eval_model, families=served)
    return type(name, (_VidpressLMM,), attributes)


MODELS = {f.lmms_eval_model: model_class(f) for f in FAMILIES.values() if f.lmms_eval_model}
MODEL_IDS = {model_id: cls.__name__ for model_id, cls in MODELS.items()}
globals().update({cls.__name__: cls for cls in MODELS.values()})  # the manifests' class paths
