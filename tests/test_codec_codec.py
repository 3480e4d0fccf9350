"""The project's codec end to end: closed loop, rate control by levels, per-region tables,
table sets in the stream, frame sizes, and stream validation."""

import cv2
import numpy as np
import pytest

from stac.codec import Decoder, Encoder, TableSet, default_tables
from stac.codec.bitstream import HEADER_SIZE
from stac.codec.color import psnr, rgb_to_ycbcr420
from stac.codec.errors import BitstreamError
from stac.frames import open_video


@pytest.fixture(scope="module")
def clip(dataset):
    """Eight real dash-cam frames resized to 160x96 (a real scene, small and fast)."""
    video = dataset("videos") / "solidWhiteRight.mp4"
    return [f.rgb for f in open_video(video, size=(160, 96), max_frames=8)]


def _roundtrip(frames, enc, dec, levels, intra_at=()):
    out = []
    for i, f in enumerate(frames):
        ef = enc.encode(f, levels, intra=i in intra_at)
        rgb = dec.decode(ef.data)
        assert np.array_equal(rgb, ef.reconstruction), f"frame {i} decoder != encoder"
        out.append(ef)
    return out


def test_closed_loop_ippp_is_bit_exact_and_predicts(clip):
    enc, dec = Encoder(160, 96), Decoder()
    coded = _roundtrip(clip, enc, dec, 28, intra_at=(5,))
    assert [c.stats.intra for c in coded] == [True, False, False, False, False, True, False, False]
    p_sizes = [c.stats.n_bytes for c in coded if not c.stats.intra]
    assert max(p_sizes) < min(coded[0].stats.n_bytes, coded[5].stats.n_bytes)
    modes = {k: sum(c.stats.mb_modes[k] for c in coded[1:5]) for k in ("inter", "skip")}
    assert modes["inter"] > 0 and modes["skip"] > 0
    for f, c in zip(clip, coded, strict=True):
        assert psnr(c.planes[0], rgb_to_ycbcr420(f)[0]) == pytest.approx(c.stats.psnr_y)
        assert c.stats.psnr_y > 36


def test_levels_trade_bytes_for_quality(clip):
    results = []
    for level in (20, 30, 40):
        enc, dec = Encoder(160, 96), Decoder()
        coded = _roundtrip(clip[:3], enc, dec, level)
        results.append(
            (sum(c.stats.n_bytes for c in coded), np.mean([c.stats.psnr_y for c in coded]))
        )
    sizes, quality = zip(*results, strict=True)
    assert sizes[0] > sizes[1] > sizes[2]
    assert quality[0] > quality[1] + 2 > quality[2] + 4


@pytest.mark.parametrize("size", [(77, 45), (16, 16), (33, 17), (200, 8)])
def test_arbitrary_frame_sizes(clip, size):
    w, h = size
    frames = [cv2.resize(f, (w, h), interpolation=cv2.INTER_AREA) for f in clip[:3]]
    enc, dec = Encoder(w, h, region_size=3), Decoder()
    coded = _roundtrip(frames, enc, dec, 26)
    assert coded[0].reconstruction.shape == (h, w, 3)
    assert coded[0].stats.region_bits.shape == enc.grid


def test_region_bits_and_size_model_account_for_the_frame(clip):
    enc = Encoder(160, 96)
    for f in clip[:2]:
        st = enc.encode(f, 26).stats
        payload_bits = 8 * (st.n_bytes - HEADER_SIZE)
        # every coded bit is attributed to a region (the level map and the coder flush are not)
        assert 0.9 * payload_bits < st.region_bits.sum() <= payload_bits
        assert np.all(st.region_bits >= 0) and np.all(st.region_size_model >= 0)
        # the paper's size model (Eq. 2) tracks the real bits across regions
        assert np.corrcoef(st.region_bits.ravel(), st.region_size_model.ravel())[0, 1] > 0.8


def test_frequency_shaped_tables_travel_in_the_stream(clip):
    base = default_tables().steps[[20, 26, 32, 38]]
    shaped = base.copy()
    weight = 1.0 + np.add.outer(np.arange(4), np.arange(4)).ravel() / 2.0  # coarser high freqs
    shaped[:, 0, :] *= weight
    tables = TableSet(shaped)
    enc = Encoder(160, 96, tables=tables)
    dec = Decoder()  # knows only the default set: learns this one from the intra frame
    coded = _roundtrip(clip[:3], enc, dec, 2)
    table_bytes = 4 * 96
    assert coded[0].stats.n_bytes > table_bytes and coded[1].stats.n_bytes > 0
    flat = Encoder(160, 96, tables=TableSet(base)).encode(clip[0], 2)
    assert coded[0].stats.n_bytes - table_bytes < flat.stats.n_bytes - table_bytes
    # a decoder that never saw the intra frame cannot know the table set of a P frame
    with pytest.raises(BitstreamError, match="unknown table set"):
        Decoder().decode(coded[1].data)
    # ... unless it is given the set up front; then the missing reference is the problem
    with pytest.raises(BitstreamError, match="no reference"):
        Decoder(tables=tables).decode(coded[1].data)



def test_tables_the_receiver_holds_stay_out_of_the_stream(clip):
    tables = TableSet(default_tables().steps[[20, 26, 32, 38]] * 1.1)
    embedded = Encoder(160, 96, tables=tables).encode(clip[0], 2)
    bare_enc = Encoder(160, 96, tables=tables, embed_tables=False)
    bare = bare_enc.encode(clip[0], 2)
    again = bare_enc.encode(clip[1], 2, intra=True)  # no intra frame carries them
    assert len(embedded.data) - len(bare.data) == 4 * 96
    assert len(again.data) < len(Encoder(160, 96, tables=tables).encode(clip[1], 2).data)
    dec = Decoder(tables=tables)
    for coded in (bare, again):
        np.testing.assert_array_equal(dec.decode(coded.data), coded.reconstruction)
    with pytest.raises(BitstreamError, match="unknown table set"):
        Decoder().decode(bare.data)

def test_decoder_checks_the_reference(clip):
    enc, dec = Encoder(160, 96), Decoder()
    i0 = enc.encode(clip[0], 30).data
    p1 = enc.encode(clip[1], 30).data
    p2 = enc.encode(clip[2], 30).data
    dec.decode(i0)
    with pytest.raises(BitstreamError, match="predicts from frame 1"):
        dec.decode(p2)  # p1 was lost: the decoder holds frame 0
    dec.decode(p1)
    dec.decode(p2)
    other = Encoder(96, 64).encode(cv2.resize(clip[0], (96, 64)), 30).data
    dec.decode(other)  # an intra frame of another size restarts the stream
    with pytest.raises(BitstreamError, match="against a 96x64 reference"):
        dec.decode(p2)


def test_encoder_rejects_bad_inputs(clip):
    enc = Encoder(160, 96)
    with pytest.raises(ValueError, match="level map shape"):
        enc.encode(clip[0], np.zeros((2, 2), dtype=int))
    with pytest.raises(ValueError, match="levels must be in"):
        enc.encode(clip[0], 52)
    with pytest.raises(ValueError, match="expected an RGB uint8 frame"):
        enc.encode(clip[0][:50], 30)
    with pytest.raises(ValueError):
        Encoder(0, 10)
    y, cb, cr = rgb_to_ycbcr420(clip[0])
    with pytest.raises(ValueError, match="Cb plane"):
        enc.encode_planes(y, cb[:-1], cr, 30)


def test_outputs_do_not_alias_the_references(clip):
    enc, dec = Encoder(160, 96), Decoder()
    first = enc.encode(clip[0], 30)
    out = dec.decode_planes(first.data)
    for plane in (*first.planes, *out):
        plane[:] = 0  # a caller scribbling on its frames must not change the references
    second = enc.encode(clip[1], 30)
    assert np.array_equal(dec.decode(second.data), second.reconstruction)
    assert second.stats.psnr_y > 32 and second.stats.mb_modes["intra"] < 10


def test_inter_residual_coefficients_feed_the_size_model(clip):
    from stac.codec.quant import expand_levels, region_sum, size_model
    from stac.codec.transform import rgb_to_coeffs

    enc = Encoder(160, 96)
    with pytest.raises(ValueError, match="no reference"):
        enc.inter_residual_coeffs(clip[1])
    enc.encode(clip[0], 26)
    res = enc.inter_residual_coeffs(clip[1])
    orig = rgb_to_coeffs(clip[1])
    assert [r.shape for r in res] == [o.shape for o in orig]
    steps = default_tables().steps[30]
    v_res = sum(size_model(r, steps[c]).sum() for c, r in enumerate(res))
    v_orig = sum(size_model(o, steps[c]).sum() for c, o in enumerate(orig))
    assert v_res < 0.5 * v_orig  # prediction removes most of what an intra frame would cost
    # per region V''_r (Eq. 7) for two levels: a coarser table never costs more
    per_level = []
    for level in (24, 36):
        lv = expand_levels(np.full(enc.grid, level), *res[0].shape[:2], 6)
        per_level.append(region_sum(size_model(res[0], default_tables().steps[lv, 0]), 6, enc.grid))
    assert np.all(per_level[1] <= per_level[0]) and per_level[1].sum() < per_level[0].sum()
    # nothing was encoded: the next P frame is still predicted from frame 0
    assert not enc.encode(clip[1], 26).stats.intra


def test_deblocking_smooths_block_edges_but_keeps_real_edges():
    from stac.codec.deblock import deblock_frame, level_qps

    qps = level_qps(default_tables().steps)
    assert qps[30, 0] == 30 and qps[51, 1] == 39  # the ladder's QPs (chroma QP saturates)
    results = []
    for step in (6, 100):  # a blocking artefact vs a real edge (alpha(36) = 50)
        y = np.full((16, 32), 100, np.uint8)
        y[:, 16:] += step
        chroma = np.full((2, 8, 16), 128, np.uint8)
        intra = np.zeros((1, 2), np.int64)  # two intra macroblocks: strength 4 at x = 16
        deblock_frame(
            y,
            chroma,
            intra,
            np.zeros((1, 2, 2), np.int64),
            np.zeros((4, 8), np.int64),
            np.full((4, 8), 36),
            np.full((2, 4), 36),
            qps,
        )
        results.append(y.astype(int))
    small, big = results
    assert abs(small[0, 16] - small[0, 15]) < 3 and np.all(np.diff(small[0]) >= 0)
    assert np.array_equal(big[:, 16:], np.full((16, 16), 200)) and np.all(big[:, :16] == 100)


def test_same_inputs_same_bytes(clip):
    runs = []
    for _ in range(2):
        enc = Encoder(160, 96)
        runs.append([enc.encode(f, lv).data for f, lv in zip(clip[:3], (24, 30, 36), strict=True)])
    assert runs[0] == runs[1]


def test_encoder_can_predict_from_the_last_delivered_frame(clip):
    enc, dec = Encoder(160, 96), Decoder()
    delivered = enc.encode(clip[0], 30)
    dec.decode(delivered.data)
    enc.encode(clip[1], 30)  # coded, then dropped before sending (STAC §VII)
    enc.encode(clip[2], 30)  # dropped too
    enc.use_reference(delivered.reference)
    nxt = enc.encode(clip[3], 30)
    assert not nxt.stats.intra
    assert np.array_equal(dec.decode(nxt.data), nxt.reconstruction)
    with pytest.raises(ValueError, match="padded size"):
        enc.use_reference(Encoder(64, 48).encode(clip[0][:48, :64], 30).reference)


@pytest.mark.parametrize("size", [(160, 96), (150, 90)])
def test_reconstruct_intra_is_the_intra_encode_without_bytes(clip, size):
    """`reconstruct_intra` (the range coder's arithmetic skipped, its contexts adapting)
    gives the very planes and size model of an intra encode at the same per-region levels,
    and leaves the stream alone: the next frame codes as if it had not been called."""
    w, h = size
    frames = [cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in clip[:3]]
    enc = Encoder(w, h)
    levels = np.random.default_rng(1).integers(14, 40, enc.grid)
    ref = Encoder(w, h)
    ref.encode(frames[0], 26)
    enc.encode(frames[0], 26)
    planes = rgb_to_ycbcr420(frames[1])
    got = enc.reconstruct_intra(*planes, levels=levels)
    want = Encoder(w, h).encode_planes(*planes, levels=levels, intra=True)
    for a, b in zip(got.planes, want.planes, strict=True):
        assert np.array_equal(a, b)
    assert np.array_equal(got.region_size_model, want.stats.region_size_model)
    assert got.region_size_model.min() < got.region_size_model.max()
    assert enc.encode(frames[2], 26).data == ref.encode(frames[2], 26).data
    with pytest.raises(ValueError, match="uint8 Y plane"):
        enc.reconstruct_intra(planes[0][:-2], *planes[1:], levels=levels)
