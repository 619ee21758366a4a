"""Every stage-1 method and the inner stage on float32, bfloat16 and float16 tokens of any norm.

Agreement with float32 is defined up to ties at low-precision rounding. The decisions that run
in the tokens' dtype are the redundancy gate's cosines and DPC-KNN's distances (everything else
is float32 whatever the input). While the float32 run of a method makes them, ``decision_margins``
records how far each one is from a tie, in float64, against a first-order bound on what rounding
to the low precision can change (``D2_SLACK``, ``COS_SLACK``). Where every margin clears its
bound the low-precision result must equal the float32 one exactly; where one does not, the
example is a tie and only the result's validity is checked.
"""

import contextlib
import math
from unittest import mock

import pytest
import torch
from hypothesis import event, given, settings
from hypothesis import strategies as st

from vidpress import functional as F
from vidpress.presses import STAGE1_PRESSES

pytestmark = pytest.mark.usefixtures("tiny_cpu")

DTYPES = (torch.float32, torch.bfloat16, torch.float16)
# Unit roundoff: how far rounding to the dtype moves a number, relative to it.
ROUNDOFF = {torch.float32: 0.0, torch.bfloat16: 2.0**-8, torch.float16: 2.0**-11}
# A squared distance computed in low precision is off by at most D2_SLACK u B^2 (B bounds the
# centred rows' norms): 8 from rounding the centred rows, 3 + 1 from rounding the product
# 2 x.y - |y|^2 and |y|^2, and 4 more for HoliTom's window means, rounded before DPC-KNN.
D2_SLACK = 16
# A cosine of two unit rows stored and multiplied in low precision is off by at most 3u.
COS_SLACK = 4
# Powers of two the test tokens are multiplied by: float16 stores them (its largest number is
# 65,504; |x|^2 overflows it from 2^5 on), the other dtypes have float32's range.
EXPONENTS = {torch.float32: (-30, 30), torch.bfloat16: (-30, 30), torch.float16: (-12, 12)}


def video(frames: int, per_frame: int, dim: int, seed: int, exponent: int, static: float):
    """Tokens with clear decisions: orthogonal directions, distinct lengths in [1, 2) x 2^e.

    A ``static`` share of the positions keeps its direction through time (HoliTom's static
    windows, the gate's rejections); scores are distinct. Returns float32 (tokens, scores).
    """
    g = torch.Generator().manual_seed(seed)
    m = frames * per_frame
    basis, _ = torch.linalg.qr(torch.randn(dim, m, generator=g, dtype=torch.float64))
    length = (1 + 3 * torch.randperm(m, generator=g).double() / m).sqrt().view(frames, per_frame)
    direction = torch.arange(m).view(frames, per_frame)
    still = torch.rand(per_frame, generator=g) < static
    direction[:, still] = direction[0, still]
    tokens = length[..., None] * basis.T[direction] * 2.0**exponent
    return tokens.float(), torch.rand(frames, per_frame, generator=g)


def _d2_tolerance(x: torch.Tensor, roundoff: float) -> float:
    """The bound on a low-precision squared distance's error between rows of ``x: [M, D]``."""
    x = x.double()
    bound = x.norm(dim=1).max() + x.mean(dim=0).norm()
    return D2_SLACK * roundoff * float(bound) ** 2


def _dpc_margin(x: torch.Tensor, k: int, count: int | None, roundoff: float) -> float:
    """How far DPC-KNN's decisions on ``x: [M, D]`` are from a tie, in units of their error
    bound: the density order, the ``count``-th centre (every gamma gap if None) and, with a
    count, each token's nearest centre."""
    m, dim = x.shape
    if m <= 1 or count == 0 or count == m:
        return math.inf
    tol = _d2_tolerance(x, roundoff)
    log_rho, delta = F.dpc_knn_scores(x.double(), k)
    density = torch.sort(log_rho, descending=True).values
    margins = [float((density[:-1] - density[1:]).min()) / (2 * tol / dim)]
    # log gamma = log rho + log delta is off by tol/D + tol / (2 D delta^2) at most
    error = tol / dim * (1 + 0.5 / delta.double().square())
    gamma = F.log_gamma(log_rho.double(), delta.double())
    order = torch.argsort(gamma, descending=True, stable=True)
    gaps = gamma[order[:-1]] - gamma[order[1:]]
    bounds = error[order[:-1]] + error[order[1:]]
    if count is None:
        return min(margins + [float((gaps / bounds).nan_to_num(0.0).min())])
    margins.append(float((gaps[count - 1] / bounds[count - 1]).nan_to_num(0.0)))
    d2 = torch.cdist(x.double(), x.double()[order[:count]]).square()
    nearest_two = torch.topk(d2, min(2, count), dim=1, largest=False).values
    if count > 1:
        margins.append(float((nearest_two[:, 1] - nearest_two[:, 0]).min()) / (2 * tol))
    return min(margins)


@contextlib.contextmanager
def decision_margins(roundoff: float):
    """Records the margins (see the module docstring) of the gate and DPC-KNN calls made in
    the block; yields the list they are appended to (empty when ``roundoff`` is 0)."""
    from vidpress.functional import dpc_knn, fastvid, holitom, unified

    margins: list[float] = []
    if roundoff == 0:
        yield margins
        return

    def gate(features, tau, capacity, order=None, block=512):
        u = torch.nn.functional.normalize(features.double(), dim=-1)
        cos = (u @ u.T)[~torch.eye(u.shape[0], dtype=torch.bool)]
        if cos.numel() > 0:
            margins.append(float((cos - tau).abs().min()) / (COS_SLACK * roundoff))
        return F.cosine_gate(features, tau, capacity, order, block)

    def cluster(x, count, k=7, runner=None):
        margins.append(_dpc_margin(x, k, count, roundoff))
        return F.dpc_knn_cluster(x, count, k, runner)

    def planned(x, count, k, room):
        margins.append(_dpc_margin(x, k, count, roundoff))
        return dpc_knn.dpc_knn_planned(x, count, k, room)

    def batched(x, valid, k=7):
        margins.extend(_dpc_margin(x[b][valid[b]], k, None, roundoff) for b in range(x.shape[0]))
        return F.dpc_knn_scores_batched(x, valid, k)

    with (
        mock.patch.object(unified, "cosine_gate", gate),
        mock.patch.object(unified, "dpc_knn_planned", planned),
        mock.patch.object(holitom, "dpc_knn_cluster", cluster),
        mock.patch.object(fastvid, "dpc_knn_scores_batched", batched),
    ):
        yield margins


def check_valid(res, frames: int, grid: tuple[int, int], budget: int):
    """Exact budget, positions inside the video, a consistent assignment, finite tokens."""
    rows, cols = grid
    assert len(res) == budget and res.assignment.shape == (frames * rows * cols,)
    for axis, size in enumerate((frames, rows, cols)):
        assert bool((res.positions[:, axis] >= 0).all() and (res.positions[:, axis] < size).all())
    flat = (res.positions[:, 0] * rows + res.positions[:, 1]) * cols + res.positions[:, 2]
    assert torch.equal(res.assignment[flat], torch.arange(budget)), "a position is a member"
    members = res.assignment[res.assignment >= 0]
    assert torch.equal(res.sizes, torch.bincount(members, minlength=budget))
    assert bool(torch.isfinite(res.tokens).all())


def check_agrees(res, ref, dtype: torch.dtype):
    """The same selection as float32; output tokens equal up to rounding to ``dtype``."""
    assert torch.equal(res.assignment, ref.assignment)
    assert torch.equal(res.positions, ref.positions) and torch.equal(res.sizes, ref.sizes)
    scale = float(ref.tokens.abs().max())
    atol = 4 * ROUNDOFF[dtype] * scale + torch.finfo(dtype).tiny
    torch.testing.assert_close(res.tokens.float(), ref.tokens.float(), rtol=0, atol=atol)


@st.composite
def cases(draw):
    dtype = draw(st.sampled_from(DTYPES))
    frames = draw(st.integers(1, 3))
    grid = draw(st.sampled_from([(2, 2), (2, 3), (3, 3), (3, 4)]))
    budget = draw(st.integers(1, frames * grid[0] * grid[1]))
    exponent = draw(st.integers(*EXPONENTS[dtype]))
    static = draw(st.sampled_from([0.0, 0.5, 1.0]))
    return dtype, frames, grid, budget, exponent, static, draw(st.integers(0, 2**16))


@pytest.mark.parametrize("name", STAGE1_PRESSES)
@settings(max_examples=20, deadline=None)
@given(case=cases())
def test_every_dtype_and_norm_gives_the_float32_selection(name, case):
    dtype, frames, grid, budget, exponent, static, seed = case
    tokens, scores = video(frames, grid[0] * grid[1], 40, seed, exponent, static)
    low = tokens.to(dtype)
    res = F.compress_video_tokens(name, low, scores, budget=budget, grid=grid)
    check_valid(res, frames, grid, budget)
    with decision_margins(ROUNDOFF[dtype]) as margins:
        ref = F.compress_video_tokens(name, low.float(), scores, budget=budget, grid=grid)
    clear = min(margins, default=math.inf) >= 1
    event("compared with float32" if clear else "a tie at low precision: validity only")
    if clear:
        check_agrees(res, ref, dtype)


def test_the_reported_float16_case():
    """Issue 17: D = 3584 at token RMS 4.5 puts |x|^2 above float16's 65,504 (IndexError)."""
    g = torch.Generator().manual_seed(0)
    half = (4.5 * torch.randn(4, 16, 3584, generator=g)).half()
    assert float(half.float().square().sum(dim=-1).min()) > torch.finfo(torch.float16).max
    res = F.compress_video_tokens("unified", half, torch.rand(4, 16, generator=g), budget=10)
    check_valid(res, 4, (4, 4), 10)
    # the same norms with clear decisions: exactly the float32 result
    tokens, scores = video(2, 9, 3584, seed=0, exponent=0, static=0.0)
    half = (tokens * (4.5 / tokens.square().mean().sqrt())).half()
    res = F.compress_video_tokens("unified", half, scores, budget=10)
    with decision_margins(ROUNDOFF[torch.float16]) as margins:
        ref = F.compress_video_tokens("unified", half.float(), scores, budget=10)
    assert min(margins) >= 1
    check_agrees(res, ref, torch.float16)


def test_large_norms_keep_the_density_order():
    """rho = exp(-mean d^2) is 0 in float32 from a token RMS of about 7 on: the centres must
    still be the densest tokens (by log rho, whose order does not depend on the scale), not the
    first ones by index that all-zero gammas would give."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(60, 16, generator=g)
    log_rho, _ = F.dpc_knn_scores(x)
    densest = torch.argsort(log_rho, descending=True)[:6]
    for exponent in (8, 12):
        centres = F.dpc_knn_centres(x * 2.0**exponent, 6)
        assert sorted(centres.tolist()) == sorted(densest.tolist())


@settings(max_examples=30, deadline=None)
@given(
    dtype=st.sampled_from(DTYPES),
    data=st.data(),
    visual=st.integers(2, 30),
    merge=st.sampled_from(F.MERGE_MODES),
    seed=st.integers(0, 2**16),
)
def test_inner_stage_on_every_dtype_and_norm(dtype, data, visual, merge, seed):
    """Eq. 9 and the in-LLM merge compute their cosines and means in float32 for any dtype."""
    exponent = data.draw(st.integers(*EXPONENTS[dtype]))
    keep = data.draw(st.integers(1, visual))
    g = torch.Generator().manual_seed(seed)
    hidden = (torch.randn(visual, 40, generator=g) * 2.0**exponent).to(dtype)
    text = (torch.randn(5, 40, generator=g) * 2.0**exponent).to(dtype)
    attention = torch.rand(5, visual, generator=g)
    importance = F.text_aware_importance(attention, hidden, text)
    expected = F.text_aware_importance(attention, hidden.float(), text.float())
    torch.testing.assert_close(importance, expected, rtol=1e-5, atol=1e-6)
    res = F.inner_compress(hidden, expected, keep, merge=merge)
    ref = F.inner_compress(hidden.float(), expected, keep, merge=merge)
    assert torch.equal(res.keep_index, ref.keep_index) and torch.equal(res.sizes, ref.sizes)
    assert res.hidden.dtype == dtype and bool(torch.isfinite(res.hidden).all())
    scale = float(ref.hidden.abs().max())
    atol = 2 * ROUNDOFF[dtype] * scale + torch.finfo(dtype).tiny
    torch.testing.assert_close(res.hidden.float(), ref.hidden, rtol=0, atol=atol)
