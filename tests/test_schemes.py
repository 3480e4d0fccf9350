"""The h264 / jpeg offloading schemes driven by hand, without a driver (sans-IO)."""

import helpers
import numpy as np
import pytest

from edge.offload import nal_types, segment
from stac.codec.labels import LabelCodecError, decode_labels, encode_labels
from stac.codec.reference import X264Decoder
from stac.frames import open_source
from stac.protocol import Config
from stac.schemes import SchemeError, list_schemes, make_scheme

SIZE = (96, 64)


@pytest.fixture(scope="module")
def frames():
    return [f.rgb for f in open_source("default", size=SIZE, max_frames=12)]


def build_scheme(name, model, **kw):
    return helpers.build_scheme(name, model, SIZE, **kw)


def test_registry():
    assert {"h264", "jpeg"} <= set(list_schemes())
    with pytest.raises(SchemeError, match="unknown scheme 'nope'"):
        build_scheme("nope", None)


def test_h264_keyframes_bytes_and_feedback(frames, untrained_drn):
    scheme = build_scheme("h264", untrained_drn, fps=10.0, qp=30)
    dev, edge = scheme.device, scheme.edge
    outs = [dev.on_frame(i, i / 25, f) for i, f in enumerate(frames)]
    keys = [i for i, o in enumerate(outs) if o.keyframe is not None]
    assert keys == [0, 3, 5, 8, 10]  # 10 of every 25 frames, evenly spaced
    assert all(o.segmentation is None and o.result_index is None for o in outs)
    assert [w.kind for w in outs[0].work] == ["encode"] and outs[1].work == []
    # real x264: the first keyframe is an IDR with SPS, later ones are P-frames without
    assert 7 in nal_types(outs[0].keyframe.payload)
    assert 7 not in nal_types(outs[3].keyframe.payload)
    dec = X264Decoder(*SIZE)
    for k in keys:
        kf = outs[k].keyframe
        fb = edge.on_keyframe(kf).feedback
        assert fb.index == k
        labels = decode_labels(fb.segmentation)
        expected, _ = segment(untrained_drn, dec.decode(kf.payload))
        np.testing.assert_array_equal(labels, expected)
        dev.on_feedback(fb)
    # the device shows the newest result, as is, and ignores an older one arriving late
    out = dev.on_frame(12, 12 / 25, frames[-1])
    assert out.result_index == 10 and not out.propagated
    older = type(fb)(index=3, segmentation=encode_labels(np.zeros(SIZE[::-1], np.uint8)))
    dev.on_feedback(older)
    assert dev.on_frame(13, 13 / 25, frames[-1]).result_index == 10


def test_h264_qp_changes_bytes(frames, untrained_drn):
    sizes = {}
    for qp in (20, 40):
        dev = build_scheme("h264", untrained_drn, fps=25.0, qp=qp).device
        sizes[qp] = sum(len(dev.on_frame(i, i / 25, f).keyframe.payload)
                        for i, f in enumerate(frames))
    assert sizes[20] > 2 * sizes[40]


def test_reconfiguration_restarts_stream(frames, untrained_drn):
    scheme = build_scheme("h264", untrained_drn, fps=5.0, qp=30)
    dev, edge = scheme.device, scheme.edge
    first = dev.on_frame(0, 0.0, frames[0]).keyframe
    edge.on_keyframe(first)
    assert dev.on_frame(1, 0.04, frames[1]).keyframe is None
    dev.on_config(Config.of({"qp": 30, "fps": 25.0}, t_effective=0.08))  # frames in between dropped
    kf = dev.on_frame(2, 0.08, frames[2]).keyframe
    assert kf is not None and 7 in nal_types(kf.payload)  # a new stream: IDR first
    assert dev.on_frame(3, 0.12, frames[3]).keyframe is not None  # every frame at 25 fps
    assert edge.on_keyframe(kf).feedback.index == 2


def test_jpeg_quality_and_decode(frames, untrained_drn):
    small = build_scheme("jpeg", untrained_drn, fps=25.0, quality=10)
    large = build_scheme("jpeg", untrained_drn, fps=25.0, quality=90)
    a = small.device.on_frame(0, 0.0, frames[0]).keyframe.payload
    b = large.device.on_frame(0, 0.0, frames[0]).keyframe.payload
    assert a[:2] == b"\xff\xd8" and len(b) > 2 * len(a)
    fb = small.edge.on_keyframe(small.device.on_frame(1, 0.04, frames[1]).keyframe).feedback
    assert decode_labels(fb.segmentation).shape == (SIZE[1], SIZE[0])


def test_edge_schedule_returns_configs(untrained_drn):
    edge = build_scheme("h264", untrained_drn, schedule={2: 5.0}, fps=10.0).edge
    assert edge.on_second(0, 100.0, 1000.0, None) is None
    cfg = edge.on_second(1, 100.0, 1000.0, None)
    assert cfg == Config.of({"qp": 30, "fps": 5.0}, t_effective=2.0)
    assert edge.on_second(2, 100.0, 1000.0, None) is None


def test_bad_knobs_rejected(untrained_drn):
    with pytest.raises(SchemeError, match=r"scheme 'h264': qp must be in \[1, 51\]"):
        build_scheme("h264", untrained_drn, qp=60)
    with pytest.raises(SchemeError, match=r"scheme 'jpeg': quality must be in \[1, 95\]"):
        build_scheme("jpeg", untrained_drn, quality=0)
    with pytest.raises(SchemeError, match="qp must be an integer"):
        build_scheme("h264", untrained_drn, qp=26.5)


def test_a_parameter_the_scheme_lacks_names_its_parameters():
    with pytest.raises(SchemeError, match=r"scheme 'h264' has no parameter B; its parameters: "
                                          r"qp \(default 30\), fps \(default 10.0\)"):
        make_scheme("h264", {"B": 4})


def test_scheme_params_are_validated_and_knobs_start_the_configuration():
    stac = make_scheme("stac", {"B": "2.5", "fps": 5})
    assert stac.get_params() == {"B": 2.5, "tables": None, "fps": 5.0}
    assert stac.config() == Config.of({"B": 2.5, "fps": 5.0})
    with pytest.raises(SchemeError, match="B must be in"):
        make_scheme("stac", {"B": 0})
    with pytest.raises(SchemeError, match="fps must be finite"):
        make_scheme("jpeg", {"fps": float("nan")})


def test_label_codec_roundtrip_and_errors():
    labels = np.random.default_rng(0).integers(0, 11, size=(37, 53), dtype=np.uint8)
    data = encode_labels(labels)
    np.testing.assert_array_equal(decode_labels(data), labels)
    with pytest.raises(LabelCodecError):
        decode_labels(b"not a png")
    with pytest.raises(LabelCodecError):
        encode_labels(np.zeros((4, 4), np.int32))
