"""Reference codecs: x264 through PyAV and JPEG through Pillow return real, decodable bytes."""

import numpy as np
import pytest

from stac.codec.color import psnr
from stac.codec.errors import BitstreamError
from stac.codec.reference import X264Decoder, X264Encoder, jpeg_decode, jpeg_encode
from stac.frames import open_video


@pytest.fixture(scope="module")
def clip(dataset):
    """First 12 frames of the real dash-cam clip, cropped to 96x160 (small and fast)."""
    video = dataset("videos") / "solidWhiteRight.mp4"
    return [np.ascontiguousarray(f.rgb[300:396, 400:560]) for f in open_video(video, max_frames=12)]


def _nal_types(data: bytes) -> list[int]:
    parts = data.split(b"\x00\x00\x01")[1:]
    return [p[0] & 0x1F for p in parts if p]


def _run_x264(frames, **kwargs):
    h, w = frames[0].shape[:2]
    enc, dec = X264Encoder(w, h, **kwargs), X264Decoder(w, h)
    sizes, quality, nals = [], [], []
    for f in frames:
        data = enc.encode(f)
        out = dec.decode(data)
        assert out.shape == f.shape and out.dtype == np.uint8
        sizes.append(len(data))
        quality.append(psnr(out, f))
        nals.append(_nal_types(data))
    return sizes, quality, nals


def test_x264_qp_trades_bytes_for_quality(clip):
    fine_sizes, fine_q, _ = _run_x264(clip, qp=20, gop=6)
    coarse_sizes, coarse_q, _ = _run_x264(clip, qp=40, gop=6)
    assert sum(fine_sizes) > 2 * sum(coarse_sizes)
    assert np.mean(fine_q) > np.mean(coarse_q) + 5
    assert np.mean(fine_q) > 38


def test_x264_gop_places_idr_frames_and_no_b_frames(clip):
    sizes, _, nals = _run_x264(clip, qp=30, gop=6)
    idr = [5 in n for n in nals]
    assert idr == [i % 6 == 0 for i in range(len(clip))]
    assert sizes[6] > max(sizes[1:6])  # an IDR costs more than the P-frames before it


def test_x264_crf_and_odd_size(clip):
    frames = [f[:45, :77] for f in clip[:3]]
    sizes, quality, _ = _run_x264(frames, crf=23, gop=30)
    assert all(s > 0 for s in sizes) and min(quality) > 30


def test_x264_rejects_bad_config_and_garbage():
    with pytest.raises(ValueError):
        X264Encoder(64, 64)
    with pytest.raises(ValueError):
        X264Encoder(64, 64, qp=60)
    with pytest.raises(BitstreamError):
        X264Decoder().decode(b"\x00\x00\x01\x65" + bytes(range(50)))


def test_jpeg_quality_and_tables(clip):
    frame = clip[0]
    sizes = [len(jpeg_encode(frame, quality=q)) for q in (20, 50, 90)]
    assert sizes[0] < sizes[1] < sizes[2]
    fine = np.full(64, 2)
    coarse = np.full(64, 40)
    b_fine = jpeg_encode(frame, qtables=[fine, fine])
    b_coarse = jpeg_encode(frame, qtables=[coarse])
    q_fine, q_coarse = psnr(jpeg_decode(b_fine), frame), psnr(jpeg_decode(b_coarse), frame)
    assert len(b_fine) > 2 * len(b_coarse) and q_fine > q_coarse + 5
    # A table that is coarse only at high horizontal frequencies costs fewer bytes than flat-fine.
    hf = fine.reshape(8, 8).copy()
    hf[:, 4:] = 100
    assert len(jpeg_encode(frame, qtables=[hf.ravel(), fine])) < len(b_fine)


def test_jpeg_errors(clip):
    with pytest.raises(ValueError):
        jpeg_encode(clip[0], quality=50, qtables=[np.ones(64)])
    with pytest.raises(ValueError):
        jpeg_encode(clip[0], qtables=[np.zeros(64)])
    data = jpeg_encode(clip[0], quality=50)
    with pytest.raises(BitstreamError):
        jpeg_decode(data[: len(data) // 3] + b"garbage")
    with pytest.raises(BitstreamError):
        jpeg_decode(b"not a jpeg at all")
