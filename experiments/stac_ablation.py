"""Which part of STAC's table adaptation costs or saves bits: full STAC, STAC without the
Eq. 7 residual levels (every region coded at its propagated Algorithm-1 level l'), and one
uniform level, on the same codec.

    python experiments/stac_ablation.py [--clip bikes|solidWhiteRight] [--frames 51]
        [--variants stac,stac_old,stac_no_eq7,uniform]

Variants (`--variants`, default the four above): `stac`, the device as shipped (Eq. 7 on
the residual against the encoder's own motion-compensated prediction,
`Encoder.inter_residual_coeffs`; 7b against V'_r = the size model per region of the
keyframe l'-coded on its own by the codec's intra path); `stac_old`, the device before
that change (residual against the previous reconstruction warped by the cached DIS flows;
V'_r = size model of the raw coefficients s' at l'); `stac_codec_residual` and
`stac_intra_budget`, one of the two changes each; `stac_no_eq7`; `uniform`. Every STAC
variant restarts from the middle level after a shot cut (`StacDevice.cut_threshold`);
`stac_no_cut` and `stac_no_eq7_no_cut` propagate the levels across cuts (the device
before 2026-11-30 late). `stac_shrink` (and `stac_shrink_no_eq7`) pull l' toward its mean
by the slope of the fed-back levels regressed on the l' the device had propagated for the
same keyframes (online, pooled over the stream; 1 until the first pair), `stac_half` by a
fixed 0.5: a test of how much of the gap is the noise in propagated levels (a deviation
from §V-B, not in the device).

Device and edge agents run in lockstep (each keyframe's feedback reaches the device before
the next frame: no network, no simulator), keyframes at --fps, the shipped model and
tables. Per variant and knob: real bytes of all keyframes, mean PA / mIoU of the
keyframes' own results against the model's output on the raw frames (cached ground
truth), and per keyframe after the first the spread (std over regions) of l' and of the
levels encoded with, and the fraction of regions coded as residual at l''. Prints JSON,
with the BD-rate of each STAC variant against `uniform` at equal keyframe PA
(`stac.metrics.bd_rate` on the Pareto fronts).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from device.stac_agent import CUT_THRESHOLD, StacDevice
from edge.models.registry import resolve_model
from stac.codec.labels import decode_labels
from stac.data import data_root
from stac.frames import open_source
from stac.groundtruth import GroundTruth
from stac.metrics import bd_rate, rd_front
from stac.schemes import DEFAULT_MODEL, Stream, make_scheme

VIDEOS = data_root() / "videos"
CLIPS = {"bikes": ("default", None),
         "solidWhiteRight": (str(VIDEOS / "solidWhiteRight.mp4"), (480, 360))}


class NoResidualLevels(StacDevice):
    """STAC's device without Eq. 7: every region at its propagated level l' (§V-B only)."""

    def _residual_levels(self, index, frame, original, lp, planes=None):
        return lp, None


class ShrunkLevels(StacDevice):
    """STAC's device with l' = mean + rho (propagated - mean): `rho` fixed, or (None) the
    pooled least-squares slope of fed-back levels on the propagated ones for the same
    keyframes (regression toward the mean of a noisy predictor)."""

    rho_fixed: float | None = None
    eq7 = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._propagated: dict[int, np.ndarray] = {}  # keyframe -> l' before shrinking
        self._newest: np.ndarray | None = None  # that of the keyframe being coded (or None)
        self._cov = self._var = 0.0

    @property
    def rho(self) -> float:
        if self.rho_fixed is not None:
            return self.rho_fixed
        return 1.0 if self._var <= 0 else float(np.clip(self._cov / self._var, 0.0, 1.0))

    def _levels_prime(self):
        if self._levels is None or self.cut_since_anchor():  # middle level: nothing to shrink
            self._newest = None
            return super()._levels_prime()
        p = self._newest = super()._levels_prime()
        m = p.mean()
        return np.clip(np.rint(m + self.rho * (p - m)), 0, self.tables.levels - 1).astype(p.dtype)

    def _residual_levels(self, index, frame, original, lp, planes=None):
        if self._newest is not None:
            self._propagated[index] = self._newest.astype(np.float64)
        if not self.eq7:
            return lp, None
        return super()._residual_levels(index, frame, original, lp, planes)

    def on_feedback(self, feedback):
        x = self._propagated.pop(feedback.index, None)
        if x is not None and feedback.levels:
            y = decode_labels(feedback.levels).astype(np.float64)
            x, y = x - x.mean(), y - y.mean()
            self._cov += float((x * y).sum())
            self._var += float((x * x).sum())
        return super().on_feedback(feedback)


class ShrunkNoEq7(ShrunkLevels):
    eq7 = False


class HalfLevels(ShrunkLevels):
    rho_fixed = 0.5


VARIANTS = {  # name -> (device class, Eq. 7 residual s'', 7b budget V'_r, shot-cut rule)
    "stac": (StacDevice, "codec", "intra", True),
    "stac_shrink": (ShrunkLevels, "codec", "intra", True),
    "stac_shrink_no_eq7": (ShrunkNoEq7, "codec", "intra", True),
    "stac_half": (HalfLevels, "codec", "intra", True),
    "stac_old": (StacDevice, "flow", "original", True),
    "stac_codec_residual": (StacDevice, "codec", "original", True),
    "stac_intra_budget": (StacDevice, "flow", "intra", True),
    "stac_no_eq7": (NoResidualLevels, "codec", "intra", True),
    "stac_no_cut": (StacDevice, "codec", "intra", False),
    "stac_no_eq7_no_cut": (NoResidualLevels, "codec", "intra", False),
    "uniform": None,
}


def play(scheme, frames, gt):
    device = scheme.device
    n_bytes, pa, miou, fresh = 0, [], [], {}
    for f in frames:
        out = device.on_frame(f.index, f.t, f.rgb)
        if out.keyframe is not None:
            fb = scheme.edge.on_keyframe(out.keyframe).feedback
            device.on_feedback(fb)
            if fb.levels:
                fresh[fb.index] = decode_labels(fb.levels).astype(np.int64)
            n_bytes += len(out.keyframe.payload)
            a, m = gt.score(f, decode_labels(fb.segmentation))
            pa.append(a)
            miou.append(m)
    info = device.keyframes[1:]  # after the first (intra, middle level) keyframe
    spread = {"std_l_prime": float(np.mean([k.levels_prime.std() for k in info])),
              "std_levels": float(np.mean([k.levels.std() for k in info])),
              "residual_fraction": float(np.mean([0.0 if k.residual is None
                                                  else k.residual.mean() for k in info]))}
    return {"bytes": n_bytes, "key_pa": float(np.mean(pa)), "key_miou": float(np.mean(miou)),
            **spread, **level_deviation(info, fresh)}


def level_deviation(info, fresh) -> dict:
    """In-loop Fig. 9: l' the device used for each keyframe against the levels the edge then
    computed on that (decoded) keyframe, over regions of keyframes with both (first keyframe
    and keyframes after a shot cut, at the middle level, excluded when l' is constant)."""
    dev = np.concatenate([np.abs(k.levels_prime - fresh[k.index]).ravel() for k in info
                          if k.index in fresh and k.levels_prime.std() > 0] or [np.zeros(0)])
    if dev.size == 0:
        return {}
    return {"l_prime_equal_fresh": float(np.mean(dev == 0)),
            "l_prime_within_3": float(np.mean(dev <= 3)),
            "l_prime_mean_abs_dev": float(dev.mean())}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clip", default="bikes", choices=sorted(CLIPS))
    p.add_argument("--frames", type=int, default=51)
    p.add_argument("--fps", type=float, default=5.0)
    p.add_argument("--B", default="1.5,4,10")
    p.add_argument("--levels", default="10,14,18")
    p.add_argument("--model", default=DEFAULT_MODEL)
    p.add_argument("--out", type=Path, default=None, help="also write the JSON to this file")
    p.add_argument("--variants", default="stac,stac_old,stac_no_eq7,uniform",
                   help="comma-separated subset of " + ",".join(VARIANTS))
    args = p.parse_args()
    torch.set_num_threads(1)
    video, size = CLIPS[args.clip]
    model = resolve_model(args.model)
    source = open_source(video, size=size)
    gt = GroundTruth(model, source, args.model)
    frames = [f for _, f in zip(range(args.frames), source, strict=False)]
    stream = Stream(source_fps=source.fps, frame_size=source.size)
    variants = args.variants.split(",")
    unknown = set(variants) - set(VARIANTS)
    if unknown:
        p.error(f"unknown variants {sorted(unknown)}; choose from {list(VARIANTS)}")
    rows = []
    for b in map(float, args.B.split(",")):
        for variant in (v for v in variants if v != "uniform"):
            s = make_scheme("stac", {"B": b, "fps": args.fps}).build(stream, model)
            kind, residual, budget, cut = VARIANTS[variant]
            s.device = kind(s.device.tables, s.config, source.fps, source.size,
                            residual=residual, budget=budget,
                            cut_threshold=CUT_THRESHOLD if cut else None)
            rows.append({"variant": variant, "knob": b, **play(s, frames, gt),
                         "rho": getattr(s.device, "rho", 1.0)})
            print(json.dumps(rows[-1]), flush=True)
    for level in map(int, args.levels.split(",")) if "uniform" in variants else ():
        s = make_scheme("uniform", {"level": level, "fps": args.fps}).build(stream, model)
        rows.append({"variant": "uniform", "knob": level, **play(s, frames, gt)})
        print(json.dumps(rows[-1]), flush=True)

    def front(variant):
        pts = [r for r in rows if r["variant"] == variant]
        return rd_front([r["bytes"] for r in pts], [r["key_pa"] for r in pts])

    ur, uq = front("uniform") if "uniform" in variants else (np.zeros(0), np.zeros(0))
    savings = {}
    for variant in (v for v in variants if v != "uniform" and ur.size):
        r, q = front(variant)
        try:
            savings[variant] = -bd_rate(ur, uq, r, q)
        except ValueError as exc:
            savings[variant] = str(exc)
    result = json.dumps({"clip": args.clip, "frames": args.frames, "fps": args.fps,
                         "saving_vs_uniform_at_equal_key_pa": savings, "runs": rows}, indent=1)
    print(result)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(result + "\n")


if __name__ == "__main__":
    main()
