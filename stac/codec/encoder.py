"""The codec's encoder (STAC §VII): RGB frames + per-region table levels -> real bytes.

`Encoder.encode(rgb, levels)` codes one frame against the previous reconstruction (or as an
intra frame), returns the bytes, the reconstruction a decoder will produce and statistics
per region (real bits, the paper's size model V_r of Eq. 7, squared error).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from stac.codec import mb_encoder
from stac.codec.bitstream import MAX_DIM, MAX_REGION, FrameHeader
from stac.codec.color import psnr, rgb_to_ycbcr420, ycbcr420_to_rgb
from stac.codec.deblock import level_qps
from stac.codec.jit import announce_compile
from stac.codec.layout import FrameLayout
from stac.codec.mb_common import EncoderInputs, FrameContext
from stac.codec.quant import TableSet, check_level_map, default_tables, region_sum
from stac.codec.rangecoder import (
    COST_TABLE,
    E_OVERFLOW,
    E_POS,
    enc_flush,
    new_contexts,
    new_encoder_state,
)
from stac.codec.syntax import N_CONTEXTS, enc_level_map
from stac.codec.transform import dct_plane


@dataclass
class FrameStats:
    """What the encoder measured on one frame; region arrays have the level map's shape."""

    intra: bool
    n_bytes: int
    level_map: np.ndarray
    region_bits: np.ndarray  # real bits spent per region (range-coder positions)
    region_size_model: np.ndarray  # sum log2(|s|/q) of the coded coefficients (V_r, Eq. 7)
    region_sse: np.ndarray  # luma squared error source vs reconstruction
    mb_modes: dict[str, int] = field(default_factory=dict)
    psnr_y: float = 0.0


@dataclass
class IntraReconstruction:
    """The decoder's (Y, Cb, Cr) planes of a frame coded intra and the size model V_r of its
    coded coefficients per region (Eq. 7), from `Encoder.reconstruct_intra` (no bytes)."""

    planes: tuple[np.ndarray, np.ndarray, np.ndarray]
    region_size_model: np.ndarray


@dataclass(frozen=True, eq=False)
class Reference:
    """A reconstructed frame that later frames may predict from (padded planes, read-only)."""

    number: int
    y: np.ndarray
    chroma: np.ndarray


@dataclass
class EncodedFrame:
    """The bytes of a frame, the decoder's (Y, Cb, Cr) planes of it and the encoder's stats.

    `reference` is this frame as a reference: pass it to `Encoder.use_reference` to predict
    the next frame from it (e.g. when the frames coded after it were dropped, STAC §VII)."""

    data: bytes
    planes: tuple[np.ndarray, np.ndarray, np.ndarray]
    stats: FrameStats
    reference: Reference

    @cached_property
    def reconstruction(self) -> np.ndarray:
        """RGB uint8 (H, W, 3), bit-exact with `Decoder.decode(data)`."""
        return ycbcr420_to_rgb(*self.planes)


class Encoder:
    """Stateful encoder of one stream (IPPP...; the reference is the last reconstruction).

    `tables` is a `TableSet` (default: the 52-level H.264 QP ladder, `default_tables()`);
    a non-default set travels embedded in intra frames and whenever it changes, unless
    `embed_tables` is False (the receiver holds the set already, as STAC's offline tables).
    `search_range` bounds integer motion search (pixels around the MV predictor); `subpel`
    enables half/quarter-pel refinement.
    """

    def __init__(
        self,
        width: int,
        height: int,
        tables: TableSet | None = None,
        region_size: int = 6,
        search_range: int = 16,
        subpel: bool = True,
        embed_tables: bool = True,
    ) -> None:
        if not (1 <= width <= MAX_DIM and 1 <= height <= MAX_DIM):
            raise ValueError(f"frame size {width}x{height} outside 1..{MAX_DIM}")
        if not 1 <= region_size <= MAX_REGION:
            raise ValueError(f"region_size must be in 1..{MAX_REGION}, got {region_size}")
        if search_range < 0:
            raise ValueError(f"search_range must be >= 0, got {search_range}")
        self.layout = FrameLayout(int(width), int(height), int(region_size))
        self.tables = tables if tables is not None else default_tables()
        self.search_range = int(search_range)
        self.subpel = bool(subpel)
        self.embed_tables = bool(embed_tables)
        self._default_id = default_tables().table_id
        self._ref: Reference | None = None
        self._frame_number = 0
        self._last_table_id: int | None = None
        announce_compile()  # a notice before the first (minutes-long) numba compile

    @property
    def grid(self) -> tuple[int, int]:
        """Shape of the region-level map `encode` expects."""
        return self.layout.grid

    def reset(self) -> None:
        """Forget the reference: the next frame is coded intra."""
        self._ref = None

    def use_reference(self, reference: Reference) -> None:
        """Predict the next frame from `reference` (an earlier `EncodedFrame.reference` of this
        stream) instead of the last encoded frame, e.g. the last frame the receiver got."""
        lay = self.layout
        if reference.y.shape != lay.padded:
            raise ValueError(f"reference of padded size {reference.y.shape}, expected {lay.padded}")
        self._ref = reference

    def set_tables(self, tables: TableSet) -> None:
        """Use another table set from the next frame on (it travels embedded in that frame)."""
        self.tables = tables

    def inter_residual_coeffs(
        self, rgb: np.ndarray, level: int = 30, planes: tuple | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """DCT coefficients of the residual frame (source - motion-compensated prediction from
        the current reference), per component, in the layout of `stac.codec.transform`.

        For STAC §V-C (Eq. 7, 7a, 7b): with `quant.size_model` and `quant.region_sum` they give
        V''_r for every candidate level before the frame is encoded. Motion search uses the
        Lagrangian of table `level` (uniform). Nothing is encoded; the state is unchanged.
        `planes` are the frame's `rgb_to_ycbcr420` planes when the caller has them already.
        """
        if self._ref is None:
            raise ValueError("no reference frame yet: the next frame is coded intra")
        rgb = np.asarray(rgb)
        lay = self.layout
        if rgb.shape != (lay.height, lay.width, 3) or rgb.dtype != np.uint8:
            raise ValueError(f"expected an RGB uint8 frame {(lay.height, lay.width, 3)}")
        src_y, src_c = lay.pad_planes(*(rgb_to_ycbcr420(rgb) if planes is None else planes))
        lvl_y, _ = lay.level_arrays(self._level_map(level))
        lam = float(lay.lambdas(self.tables, lvl_y).mean())
        ref_y, ref_c = self._ref.y, self._ref.chroma
        pred_y = np.zeros_like(src_y, dtype=np.int64)
        pred_c = np.zeros_like(src_c, dtype=np.int64)
        mb_encoder.predict_frame(
            src_y, ref_y, ref_c, np.sqrt(lam), self.search_range, self.subpel, pred_y, pred_c
        )
        h8, w8 = -(-lay.height // 8) * 8, -(-lay.width // 8) * 8
        res_y = (src_y.astype(np.int64) - pred_y)[:h8, :w8]
        res_c = (src_c.astype(np.int64) - pred_c)[:, : h8 // 2, : w8 // 2]
        return dct_plane(res_y), dct_plane(res_c[0]), dct_plane(res_c[1])

    def _level_map(self, levels) -> np.ndarray:
        if np.ndim(levels) == 0:
            levels = np.full(self.grid, int(levels), dtype=np.int64)
        return check_level_map(levels, self.grid, self.tables.levels)

    def encode(self, rgb: np.ndarray, levels, intra: bool = False) -> EncodedFrame:
        """Encode an RGB uint8 frame with one table level per region (or one for all)."""
        rgb = np.asarray(rgb)
        expected = (self.layout.height, self.layout.width, 3)
        if rgb.shape != expected or rgb.dtype != np.uint8:
            raise ValueError(f"expected an RGB uint8 frame {expected}, got {rgb.shape} {rgb.dtype}")
        return self.encode_planes(*rgb_to_ycbcr420(rgb), levels=levels, intra=intra)

    def _check_planes(self, y, cb, cr) -> None:
        lay = self.layout
        chroma = ((lay.height + 1) // 2, (lay.width + 1) // 2)
        for name, plane, shape in (
            ("Y", y, (lay.height, lay.width)),
            ("Cb", cb, chroma),
            ("Cr", cr, chroma),
        ):
            if np.shape(plane) != shape or np.asarray(plane).dtype != np.uint8:
                raise ValueError(f"expected a uint8 {name} plane {shape}, got {np.shape(plane)}")

    def _code_mbs(self, src_y, src_c, level_map, intra: bool, dry: bool = False):
        """Run the macroblock loop on padded planes: (range-coder state, its output buffer,
        reconstruction (Y, chroma), real bits and size model per luma block, MB modes).
        `dry`: the range coder only adapts its contexts (see `new_encoder_state`)."""
        lay = self.layout
        lvl_y, lvl_c = lay.level_arrays(level_map)
        lam = lay.lambdas(self.tables, lvl_y)
        ph, pw = lay.padded
        ref_y, ref_c = (src_y, src_c) if intra else (self._ref.y, self._ref.chroma)
        capacity = 2 * ph * pw + 4096  # (dry: unused, but a kernel cached before the dry
        #                                  mode existed writes its bytes; numba's cache does
        #                                  not see a callee's source change)
        while True:
            es = new_encoder_state(dry)
            out = np.zeros(capacity, dtype=np.uint8)
            probs = new_contexts(N_CONTEXTS)
            rec_y = np.zeros_like(src_y)
            rec_c = np.zeros_like(src_c)
            bits_blk = np.zeros((ph // 4, pw // 4))
            size_blk = np.zeros((ph // 4, pw // 4))
            mbtype = np.zeros((ph // 16, pw // 16), dtype=np.int64)
            enc_level_map(es, out, probs, level_map)
            ctx = FrameContext(ref_y, ref_c, rec_y, rec_c, self.tables.steps, lvl_y, lvl_c,
                               mbtype, level_qps(self.tables.steps))
            inp = EncoderInputs(src_y, src_c, lam, bits_blk, size_blk)
            mb_encoder.encode_mbs(es, out, probs, COST_TABLE, ctx, inp, intra, self.search_range,
                                  self.subpel)
            enc_flush(es, out)
            if not es[E_OVERFLOW]:
                return es, out, rec_y, rec_c, bits_blk, size_blk, mbtype
            capacity *= 4

    def _region_size_model(self, size_blk: np.ndarray) -> np.ndarray:
        lay = self.layout
        nby, nbx = -(-lay.height // 4), -(-lay.width // 4)
        return region_sum(_fold_padding(size_blk, nby, nbx), lay.region_size, lay.grid)

    def reconstruct_intra(self, y, cb, cr, levels) -> IntraReconstruction:
        """What `encode_planes(y, cb, cr, levels, intra=True)` would reconstruct, and its
        size model per region, without coding bytes (STAC §V-C needs only these of the
        keyframe coded on its own at l'). The range coder's arithmetic is skipped but its
        contexts adapt as when writing, so every mode decision, and so the reconstruction,
        is the encode's. The stream's state (reference, frame number) is untouched."""
        self._check_planes(y, cb, cr)
        level_map = self._level_map(levels)
        src_y, src_c = self.layout.pad_planes(y, cb, cr)
        _, _, rec_y, rec_c, _, size_blk, _ = self._code_mbs(src_y, src_c, level_map, True,
                                                            dry=True)
        return IntraReconstruction(self.layout.crop_planes(rec_y, rec_c),
                                   self._region_size_model(size_blk))

    def encode_planes(self, y, cb, cr, levels, intra: bool = False) -> EncodedFrame:
        """Encode 4:2:0 uint8 planes (the frame's size, chroma ceil(H/2) x ceil(W/2))."""
        lay = self.layout
        self._check_planes(y, cb, cr)
        level_map = self._level_map(levels)
        intra = intra or self._ref is None
        src_y, src_c = lay.pad_planes(y, cb, cr)
        table_id = self.tables.table_id
        embed = (self.embed_tables and table_id != self._default_id
                 and (intra or table_id != self._last_table_id))
        number = self._frame_number & 0xFFFF
        ref_number = number if intra else self._ref.number
        header = FrameHeader(
            intra,
            lay.width,
            lay.height,
            lay.region_size,
            self.tables.levels,
            table_id,
            number,
            ref_number,
            self.tables if embed else None,
        )
        es, out, rec_y, rec_c, bits_blk, size_blk, mbtype = self._code_mbs(src_y, src_c,
                                                                           level_map, intra)
        data = header.pack() + out[: es[E_POS]].tobytes()
        rec_y.setflags(write=False)
        rec_c.setflags(write=False)
        self._ref = Reference(number, rec_y, rec_c)
        self._frame_number += 1
        self._last_table_id = table_id
        y_rec, cb_rec, cr_rec = lay.crop_planes(rec_y, rec_c)
        nby, nbx = -(-lay.height // 4), -(-lay.width // 4)
        err = (y_rec.astype(np.float64) - np.asarray(y, dtype=np.float64)) ** 2
        sse_blk = np.pad(err, ((0, -lay.height % 4), (0, -lay.width % 4)))
        sse_blk = sse_blk.reshape(nby, 4, nbx, 4).sum(axis=(1, 3))
        modes = np.bincount(mbtype.ravel(), minlength=3)
        stats = FrameStats(
            intra=intra,
            n_bytes=len(data),
            level_map=level_map,
            region_bits=region_sum(_fold_padding(bits_blk, nby, nbx), lay.region_size, lay.grid),
            region_size_model=self._region_size_model(size_blk),
            region_sse=region_sum(sse_blk, lay.region_size, lay.grid),
            mb_modes={"intra": int(modes[0]), "inter": int(modes[1]), "skip": int(modes[2])},
            psnr_y=psnr(y_rec, np.asarray(y)),
        )
        return EncodedFrame(data, (y_rec, cb_rec, cr_rec), stats, self._ref)


def _fold_padding(per_block: np.ndarray, nby: int, nbx: int) -> np.ndarray:
    """Per-block values of the frame, those of padding blocks added to the border blocks."""
    out = per_block[:nby, :nbx].copy()
    out[-1, :] += per_block[nby:, :nbx].sum(axis=0)
    out[:, -1] += per_block[:nby, nbx:].sum(axis=1)
    out[-1, -1] += per_block[nby:, nbx:].sum()
    return out
