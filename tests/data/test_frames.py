"""Frame sampling at segment centres, decord vs PyAV, caching, and unreadable videos."""

from __future__ import annotations

import numpy as np
import pytest
from videos import frame_indices, index_frames, write_index_video

from flowcheck.data.frames import FrameCache, FrameRequest, VideoError, frame_times, read_frames, read_many
from flowcheck.data.sample import Sample
from flowcheck.data.sampling import segment_centre_indices


def test_segment_centres_follow_the_authors_rule():
    # 16 frames, 8 samples: seg = 15/8 = 1.875, frame i = int(0.9375 + round(1.875 i))
    assert segment_centre_indices(16, 8.0, 8) == [0, 2, 4, 6, 8, 9, 11, 13]
    # bounds [1 s, 2 s] at 25 fps: start 25, end 50, seg 3.125
    assert segment_centre_indices(100, 25.0, 8, 1.0, 2.0) == [26, 29, 32, 35, 38, 42, 45, 48]
    with pytest.raises(ValueError, match="select no frame"):
        segment_centre_indices(10, 10.0, 8, 5.0, 6.0)


def test_frame_times_are_the_seconds_of_the_decoded_frames(tmp_path):
    video = write_index_video(tmp_path / "v.mp4", 40, fps=10)
    times = frame_times(video, 4, start=1.0, end=3.0)
    assert times == [i / 10 for i in frame_indices(read_frames(video, 4, start=1.0, end=3.0))]
    assert times == [1.2, 1.7, 2.2, 2.7]
    assert frame_times(tmp_path / "missing.mp4", 4) is None


@pytest.mark.parametrize("backend", ["decord", "pyav", "auto"])
def test_decoded_frames_are_the_segment_centres(tmp_path, backend):
    video = write_index_video(tmp_path / "v.mp4", 40, fps=10)
    frames = read_frames(video, 8, backend=backend)
    assert frames.dtype == np.uint8 and frames.shape == (8, 32, 32, 3)
    assert frame_indices(frames) == segment_centre_indices(40, 10.0, 8)
    bounded = read_frames(video, 4, start=1.0, end=3.0, backend=backend)
    assert frame_indices(bounded) == segment_centre_indices(40, 10.0, 4, 1.0, 3.0)


def test_decord_and_pyav_agree_on_the_pixels(tmp_path):
    rng = np.random.default_rng(0)
    from flowcheck.data.synth import write_mp4

    frames = rng.integers(0, 256, (12, 32, 32, 3), dtype=np.uint8)
    write_mp4(tmp_path / "noise.mp4", frames)
    a = read_frames(tmp_path / "noise.mp4", 6, backend="decord")
    b = read_frames(tmp_path / "noise.mp4", 6, backend="pyav")
    assert np.array_equal(a, b)  # lossless encoding: exact agreement
    assert np.array_equal(a, frames[segment_centre_indices(12, 8.0, 6)])


def test_auto_falls_back_to_pyav_when_decord_fails(tmp_path):
    from flowcheck.data.synth import write_mp4

    frames = np.random.default_rng(1).integers(0, 256, (10, 24, 24, 3), dtype=np.uint8)
    write_mp4(tmp_path / "narrow.mp4", frames)  # decord 0.6 mis-strides RGB frames whose width is not a multiple of 32
    with pytest.raises(VideoError, match="decord"):
        read_frames(tmp_path / "narrow.mp4", 5, backend="decord")
    assert np.array_equal(read_frames(tmp_path / "narrow.mp4", 5), frames[segment_centre_indices(10, 8.0, 5)])


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


def test_cache_decodes_each_video_once_and_persists_to_disk(tmp_path):
    video = write_index_video(tmp_path / "v.mp4", 20)
    cache = FrameCache(directory=tmp_path / "cache")
    request = FrameRequest(str(video), 8, None, None)
    first = cache.get(request)
    assert np.array_equal(cache.get(request), first) and cache.decoded == 1
    fresh = FrameCache(directory=tmp_path / "cache")
    assert np.array_equal(fresh.get(request), first) and fresh.decoded == 0


def test_read_many_returns_errors_for_bad_videos_and_frames_for_good_ones(tmp_path):
    good = write_index_video(tmp_path / "good.mp4", 20)
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00" * 300)
    samples = [
        Sample("a", "t", good, "q", ("x", "y"), 0),
        Sample("b", "t", bad, "q", ("x", "y"), 1),
    ]
    out = read_many(samples, 4, workers=2, progress=False)
    assert np.array_equal(out["a"], index_frames(20)[segment_centre_indices(20, 10.0, 4)])
    assert isinstance(out["b"], VideoError) and out["b"].path == str(bad)
