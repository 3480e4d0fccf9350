"""Non-uniform levels (STAC §IV-B): two region maps move sizes and distortions per region
as the tables say."""

import numpy as np
import pytest

from stac.codec import Decoder, Encoder
from stac.frames import open_video


@pytest.fixture(scope="module")
def frames(dataset):
    video = dataset("videos") / "solidWhiteRight.mp4"
    return [f.rgb for f in open_video(video, size=(192, 144), max_frames=2)]


def _checkerboard(grid, fine, coarse, phase):
    ry, rx = np.indices(grid)
    return np.where((ry + rx + phase) % 2 == 0, fine, coarse)


@pytest.mark.parametrize("inter", [False, True])
def test_swapped_region_maps_swap_bits_and_distortion(frames, inter):
    results = []
    for phase in (0, 1):
        enc, dec = Encoder(192, 144), Decoder()
        grid = enc.grid
        if inter:
            dec.decode(enc.encode(frames[0], 24).data)
        level_map = _checkerboard(grid, 22, 38, phase)
        ef = enc.encode(frames[1], level_map)
        assert np.array_equal(dec.decode(ef.data), ef.reconstruction)
        assert np.array_equal(dec.last_level_map, level_map)
        results.append((level_map, ef.stats))
    (map_a, st_a), (map_b, st_b) = results
    finer_in_a = map_a < map_b
    assert finer_in_a.sum() > 0 and (~finer_in_a).sum() > 0

    # Where A has the finer table, A spends more bits and leaves less error, and vice versa
    # (ties allowed: a static, flat region can be skipped under both tables).
    def moves(a, b, finer_gets_more, tie):
        more = np.where(finer_in_a, a - b, b - a) * (1 if finer_gets_more else -1)
        return (more >= -tie).mean(), (more > tie).mean()

    bits_tie, bits_up = moves(st_a.region_bits, st_b.region_bits, True, tie=2.0)
    sse_tie, sse_down = moves(st_a.region_sse, st_b.region_sse, False, tie=0.0)
    # (inter: the error of a region skipped under both maps depends on the motion vectors its
    # neighbours chose, so a few regions may go either way)
    assert bits_tie == 1.0 and sse_tie >= (0.85 if inter else 1.0)
    assert min(bits_up, sse_down) > (0.6 if inter else 0.9)
    sse_fine = st_a.region_sse[finer_in_a].sum() + st_b.region_sse[~finer_in_a].sum()
    sse_coarse = st_b.region_sse[finer_in_a].sum() + st_a.region_sse[~finer_in_a].sum()
    assert sse_fine < 0.5 * sse_coarse
    # The paper's size model moves the same way.
    model_up = np.where(
        finer_in_a,
        st_a.region_size_model >= st_b.region_size_model,
        st_b.region_size_model >= st_a.region_size_model,
    )
    assert model_up.mean() > 0.9
    # Totals: half the regions fine in each map -> comparable frame sizes (within 40%).
    assert 0.6 < st_a.n_bytes / st_b.n_bytes < 1.6


def test_one_region_changes_only_its_own_neighbourhood(frames):
    enc = Encoder(192, 144)
    grid = enc.grid
    base = np.full(grid, 30)
    st_base = enc.encode(frames[0], base).stats
    enc.reset()
    fine = base.copy()
    fine[2, 3] = 14
    st_fine = enc.encode(frames[0], fine).stats
    assert st_fine.region_bits[2, 3] > 1.5 * st_base.region_bits[2, 3]
    assert st_fine.region_sse[2, 3] < 0.5 * st_base.region_sse[2, 3]
    # Regions coded before it (macroblock rows 0-2 = region rows 0-1) are untouched, except
    # the pixels the deblocking filter smooths across its top edge (region (1, 2..4)); later
    # ones change only through intra prediction from its neighbourhood.
    before = np.ones(grid, dtype=bool)
    before[2:] = False
    before[1, 2:5] = False
    assert np.array_equal(st_fine.region_sse[before], st_base.region_sse[before])
    assert np.allclose(st_fine.region_bits[:2], st_base.region_bits[:2], atol=0.1)
    rest = slice(4, None)
    change = np.abs(st_fine.region_sse[rest] - st_base.region_sse[rest]).sum()
    assert change < 0.1 * st_base.region_sse[rest].sum()
