"""Evaluation: the SynthVQA harness (accuracy per task family for any list of presses).

- ``configs``: press configurations ``NAME[:key=value,...]@A/B`` and the paper's grids;
- ``scoring``: answers from the option letters' logits;
- ``shared_vision``: the vision tower runs once per video for all configurations;
- ``runner``: the evaluation loop over items and configurations, and its raw records;
- ``summary``: accuracy per family, intervals and the issue's bars;
- ``harness``: ``run_eval``, the suite and settings, sharding over processes;
- ``report``: JSON + markdown + PNG writers;
- ``evaluate_synthvqa``: all of it in one call (what ``vidpress eval`` runs).
"""

from vidpress.evaluation.configs import (
    PressConfig,
    ablation_configs,
    dedupe,
    parse_config,
    standard_configs,
)
from vidpress.evaluation.harness import EvalSettings, SuiteSpec, run_eval
from vidpress.evaluation.runner import evaluate_items
from vidpress.evaluation.scoring import letter_scores, letter_token_ids
from vidpress.evaluation.shared_vision import SharedVision
from vidpress.evaluation.synthvqa import evaluate_synthvqa

__all__ = [
    "EvalSettings",
    "PressConfig",
    "SharedVision",
    "SuiteSpec",
    "ablation_configs",
    "dedupe",
    "evaluate_items",
    "evaluate_synthvqa",
    "letter_scores",
    "letter_token_ids",
    "parse_config",
    "run_eval",
    "standard_configs",
]
