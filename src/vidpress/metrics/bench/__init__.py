"""``vidpress bench``: efficiency of every press on one GPU (the paper's Table 6, extended).

One run builds a full-size architecture with random weights (``metrics.architectures``), one
video prompt, and measures for the uncompressed model and each press x retention, with warm-up
and medians over repeats (``metrics.latency``):

    vision     the vision tower + projector inside the forward (CUDA events)
    scores     the press's vision-score computation (``run.stats``)
    process    the press's stage-1 compression before the LLM: ``run.stats`` outer time minus
               the scores (its in-LLM stage runs inside the prefill and is counted there, and
               reported as ``inner``)
    prefill    the LLM forward on the (compressed) sequence
    TTFT       ``generate`` of one token from pixel inputs
    decode     tokens/s over ``decode_tokens`` greedy tokens after the first (EOS ignored)
    peak       peak GPU memory of the ``generate`` call that decodes (weights included)

Once per model (``vision.vision_check``): the video feature path alone, the adapter's path with
and without the vision scores, and the naive alternative (the tower on eager attention with
``output_attentions``, the score read from the returned maps). A scaling sweep
(``profiles.compression_sweep``) runs the unified press at 2% on more frames (process time in the
model, and the compression's extra peak memory measured on the model's own features).

Modules: ``config`` (what a run measures, its checks), ``measure`` (one setting, the whole run:
``run_bench``), ``vision``, ``profiles`` (sweep, profiler tables, time breakdown), ``targets``
(the project's bars), ``report`` (markdown, the files written, reading a saved report) and
``plot``. The report is a JSON dict.
"""
