"""Frame sampling at segment centres by presentation time, decord vs PyAV, real frame times, caching, bad videos."""

from __future__ import annotations

import tracemalloc
import warnings

import numpy as np
import pytest
from videos import can_encode, frame_indices, index_frames, write_index_video, write_timed_video

from flowcheck.data.frames import FrameCache, FrameRequest, VideoError, read_frames, read_many
from flowcheck.data.sample import Sample
from flowcheck.data.sampling import segment_centre_indices
from flowcheck.data.video import VariableFrameRateWarning, VideoFrames

# 20 frames 50 ms apart, then 20 frames 150 ms apart: a variable frame rate (frame i shown at VFR_MS[i] ms)
VFR_MS = [50 * i for i in range(20)] + [950 + 150 * i for i in range(1, 21)]


def test_segment_centres_follow_the_authors_rule():
    # 16 frames, 8 samples: seg = 15/8 = 1.875, frame i = int(0.9375 + round(1.875 i))
    assert segment_centre_indices(16, 8.0, 8) == [0, 2, 4, 6, 8, 9, 11, 13]
    # bounds [1 s, 2 s] at 25 fps: start 25, end 50, seg 3.125
    assert segment_centre_indices(100, 25.0, 8, 1.0, 2.0) == [26, 29, 32, 35, 38, 42, 45, 48]
    with pytest.raises(ValueError, match="select no frame"):
        segment_centre_indices(10, 10.0, 8, 5.0, 6.0)


@pytest.mark.parametrize("backend", ["decord", "pyav"])
def test_frames_carry_their_presentation_times(tmp_path, backend):
    video = write_index_video(tmp_path / "v.mp4", 40, fps=10)
    got = read_frames(video, 4, start=1.0, end=3.0, backend=backend)
    # bounds [1 s, 3 s] at 10 fps: start 10, end 30, seg 5 -> frames 12, 17, 22, 27, shown at index / 10 s
    assert list(got.indices) == frame_indices(got.frames) == [12, 17, 22, 27]
    assert list(got.times) == [1.2, 1.7, 2.2, 2.7]
    assert (got.fps, got.total_frames, got.backend, got.path) == (10.0, 40, backend, str(video))


@pytest.mark.parametrize("backend", ["decord", "pyav"])
def test_fractional_frame_rate_times_are_real(tmp_path, backend):
    # 12.5 fps, 38 frames (3.04 s): frame i is shown at i * 0.08 s
    video = write_timed_video(tmp_path / "v.mp4", 38, fps=12.5)
    got = read_frames(video, 8, backend=backend)
    expected = segment_centre_indices(38, 12.5, 8)
    assert list(got.indices) == frame_indices(got.frames) == expected
    assert got.times == pytest.approx([i * 0.08 for i in expected], abs=1e-6)
    assert got.fps == 12.5 and got.total_frames == 38 and not got.variable_rate
    meta = got.metadata()
    assert (meta.fps, meta.total_num_frames, meta.frames_indices, meta.duration) == (12.5, 38, expected, 3.04)
    assert meta.timestamps == pytest.approx(list(got.times), abs=1e-6)


@pytest.mark.parametrize("backend", ["decord", "pyav"])
def test_variable_frame_rate_frames_lie_in_the_bounds_with_their_real_times(tmp_path, backend):
    video = write_timed_video(tmp_path / f"vfr-{backend}.mp4", 40, times_ms=VFR_MS)
    with pytest.warns(VariableFrameRateWarning, match="variable frame rate"):
        got = read_frames(video, 4, start=1.0, end=2.0, backend=backend)
    shown = frame_indices(got.frames)
    assert list(got.indices) == shown
    assert list(got.times) == [VFR_MS[i] / 1000 for i in shown]  # the labels are the real times of the frames shown
    assert all(1.0 <= t <= 2.0 for t in got.times) and got.variable_rate
    # index / average fps (the old rule) would have labelled and chosen frames by a uniform clock
    assert [round(i / got.fps, 3) for i in shown] != list(got.times)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once per file
        whole = read_frames(video, 8, backend=backend)
    # evenly spaced in time: frame i near the centre of the i-th eighth of [0, 3.95] s, within half the
    # longest frame duration (0.075 s) plus one step of the authors' rounding (1 / fps)
    ideal = [(i + 0.5) * 3.95 / 8 for i in range(8)]
    assert all(abs(t - c) <= 0.075 + 1 / whole.fps for t, c in zip(whole.times, ideal, strict=True))
    by_index = [VFR_MS[i] / 1000 for i in segment_centre_indices(40, whole.fps, 8)]  # the old index rule
    assert not all(abs(t - c) <= 0.075 + 1 / whole.fps for t, c in zip(by_index, ideal, strict=True))
    assert list(whole.times) == [VFR_MS[i] / 1000 for i in frame_indices(whole.frames)]
    meta = whole.metadata()  # real times on a 1 ms grid; sampled fps = frames / duration
    assert meta.timestamps == pytest.approx(list(whole.times), abs=1e-9)
    assert meta.sampled_fps == pytest.approx(8 / whole.duration, rel=1e-3)


def test_a_video_decord_cannot_open_is_decoded_by_pyav_with_its_times(tmp_path):
    if not can_encode("libsvtav1"):
        pytest.skip("this PyAV cannot encode AV1; the narrow-frame test forces the fallback instead")
    video = write_timed_video(tmp_path / "av1.mp4", 40, fps=10, codec="libsvtav1", size=64)
    with pytest.raises(VideoError, match="decord"):
        read_frames(video, 8, backend="decord")
    got = read_frames(video, 8)
    expected = segment_centre_indices(40, 10.0, 8)
    assert got.backend == "pyav" and frame_indices(got.frames) == list(got.indices) == expected
    assert list(got.times) == [i / 10 for i in expected]  # 0.2 ... 3.7 s, not 0, 1, ..., 7 s


@pytest.mark.parametrize("backend", ["decord", "pyav", "auto"])
def test_decoded_frames_are_the_segment_centres(tmp_path, backend):
    video = write_index_video(tmp_path / "v.mp4", 40, fps=10)
    frames = read_frames(video, 8, backend=backend).frames
    assert frames.dtype == np.uint8 and frames.shape == (8, 32, 32, 3)
    assert frame_indices(frames) == segment_centre_indices(40, 10.0, 8)
    bounded = read_frames(video, 4, start=1.0, end=3.0, backend=backend).frames
    assert frame_indices(bounded) == segment_centre_indices(40, 10.0, 4, 1.0, 3.0)


def test_pyav_memory_does_not_grow_with_the_video_length(tmp_path):
    from flowcheck.data.synth import write_mp4

    frames = np.random.default_rng(0).integers(0, 256, (1, 64, 64, 3), dtype=np.uint8).repeat(400, axis=0)
    write_mp4(tmp_path / "long.mp4", frames)
    tracemalloc.start()
    try:
        got = read_frames(tmp_path / "long.mp4", 8, backend="pyav")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    kept = got.frames.nbytes  # 8 frames; decoding all 400 would hold 50 times as much
    assert peak < 10 * kept, f"peak {peak} bytes for {kept} bytes of frames"


def test_decord_and_pyav_agree_on_the_pixels_and_times(tmp_path):
    rng = np.random.default_rng(0)
    from flowcheck.data.synth import write_mp4

    frames = rng.integers(0, 256, (12, 32, 32, 3), dtype=np.uint8)
    write_mp4(tmp_path / "noise.mp4", frames)
    a = read_frames(tmp_path / "noise.mp4", 6, backend="decord")
    b = read_frames(tmp_path / "noise.mp4", 6, backend="pyav")
    assert np.array_equal(a.frames, b.frames)  # lossless encoding: exact agreement
    assert np.array_equal(a.frames, frames[segment_centre_indices(12, 8.0, 6)])
    assert (a.indices, a.times, a.fps, a.total_frames) == (b.indices, b.times, b.fps, b.total_frames)


def test_auto_falls_back_to_pyav_when_decord_fails(tmp_path):
    from flowcheck.data.synth import write_mp4

    frames = np.random.default_rng(1).integers(0, 256, (10, 24, 24, 3), dtype=np.uint8)
    write_mp4(tmp_path / "narrow.mp4", frames)  # decord 0.6 mis-strides RGB frames whose width is not a multiple of 32
    with pytest.raises(VideoError, match="decord"):
        read_frames(tmp_path / "narrow.mp4", 5, backend="decord")
    got = read_frames(tmp_path / "narrow.mp4", 5)
    expected = segment_centre_indices(10, 8.0, 5)
    assert np.array_equal(got.frames, frames[expected])
    assert got.backend == "pyav" and list(got.times) == [i / 8 for i in expected]  # FPS 8: the fallback keeps times


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "does not exist"), (b"", "is empty"), (b"not a video at all" * 50, "unreadable video")],
)
def test_bad_videos_raise_an_error_naming_the_file(tmp_path, content, message):
    path = tmp_path / "bad.mp4"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(VideoError, match=message) as err:
        read_frames(path)
    assert str(path) in str(err.value)


def test_cache_decodes_each_video_once_and_persists_frames_and_times(tmp_path):
    video = write_index_video(tmp_path / "v.mp4", 20)
    cache = FrameCache(directory=tmp_path / "cache")
    request = FrameRequest(str(video), 8, None, None)
    first = cache.get(request)
    assert cache.get(request) is first and cache.decoded == 1
    fresh = FrameCache(directory=tmp_path / "cache")
    again = fresh.get(request)
    assert fresh.decoded == 0 and np.array_equal(again.frames, first.frames)
    assert (again.indices, again.times, again.fps, again.backend) == (first.indices, first.times, 10.0, "decord")


def test_read_many_returns_errors_for_bad_videos_and_frames_for_good_ones(tmp_path):
    good = write_index_video(tmp_path / "good.mp4", 20)
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00" * 300)
    samples = [
        Sample("a", "t", good, "q", ("x", "y"), 0),
        Sample("b", "t", bad, "q", ("x", "y"), 1),
    ]
    out = read_many(samples, 4, workers=2, progress=False)
    assert np.array_equal(out["a"].frames, index_frames(20)[segment_centre_indices(20, 10.0, 4)])
    assert isinstance(out["b"], VideoError) and out["b"].path == str(bad)


def test_frames_without_times_say_so():
    untimed = VideoFrames.untimed(index_frames(4))
    assert untimed.times is None
    with pytest.raises(ValueError, match="carry no times"):
        untimed.metadata()
    declared = VideoFrames.from_array(index_frames(4), fps=2.0)
    assert declared.times == (0.0, 0.5, 1.0, 1.5) and declared.metadata().fps == 2.0


def test_rate_variation_is_judged_beyond_the_rounding_of_a_millisecond_time_base():
    from flowcheck.data.frames import rate_varies

    at_120fps_in_ms = [round(i * 1000 / 120) / 1000 for i in range(60)]  # durations 8 and 9 ms: constant rate
    assert not rate_varies(at_120fps_in_ms)
    assert rate_varies([t / 1000 for t in VFR_MS])  # 50 then 150 ms
    assert not rate_varies([i * 0.08 for i in range(38)]) and rate_varies([0.0, 0.1, 0.2, 0.32, 0.42])
