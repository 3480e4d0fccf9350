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
before 2026-11-30 late).

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

import numpy as np
import torch

from device.stac_agent import CUT_THRESHOLD, StacDevice
from stac.codec.labels import decode_labels
from stac.frames import open_source
from stac.groundtruth import GroundTruth
from stac.metrics import bd_rate, rd_front
from stac.schemes import DEFAULT_MODEL, SchemeConfig, build_scheme
from stac.sim.runner import resolve_model

CLIPS = {"bikes": ("default", None),
         "solidWhiteRight": ("../shared/data/videos/solidWhiteRight.mp4", (480, 360))}


class NoResidualLevels(StacDevice):
    """STAC's device without Eq. 7: every region at its propagated level l' (§V-B only)."""

    def _residual_levels(self, index, frame, original, lp):
        return lp, None


VARIANTS = {  # name -> (device class, Eq. 7 residual s'', 7b budget V'_r, shot-cut rule)
    "stac": (StacDevice, "codec", "intra", True),
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
    n_bytes, pa, miou = 0, [], []
    for f in frames:
        out = device.on_frame(f.index, f.t, f.rgb)
        if out.keyframe is not None:
            fb = scheme.edge.on_keyframe(out.keyframe).feedback
            device.on_feedback(fb)
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
            **spread}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clip", default="bikes", choices=sorted(CLIPS))
    p.add_argument("--frames", type=int, default=51)
    p.add_argument("--fps", type=float, default=5.0)
    p.add_argument("--B", default="1.5,4,10")
    p.add_argument("--levels", default="10,14,18")
    p.add_argument("--model", default=DEFAULT_MODEL)
    p.add_argument("--variants", default="stac,stac_old,stac_no_eq7,uniform",
                   help="comma-separated subset of " + ",".join(VARIANTS))
    args = p.parse_args()
    torch.set_num_threads(1)
    video, size = CLIPS[args.clip]
    model = resolve_model(args.model)
    source = open_source(video, size=size)
    gt = GroundTruth(model, source, args.model)
    frames = [f for _, f in zip(range(args.frames), source, strict=False)]
    cfg = SchemeConfig(source_fps=source.fps, frame_size=source.size, fps=args.fps)
    variants = args.variants.split(",")
    unknown = set(variants) - set(VARIANTS)
    if unknown:
        p.error(f"unknown variants {sorted(unknown)}; choose from {list(VARIANTS)}")
    rows = []
    for b in map(float, args.B.split(",")):
        for variant in (v for v in variants if v != "uniform"):
            s = build_scheme("stac", SchemeConfig(**{**cfg.__dict__, "B": b}), model)
            kind, residual, budget, cut = VARIANTS[variant]
            s.device = kind(s.device.tables, s.config, source.fps, source.size,
                            residual=residual, budget=budget,
                            cut_threshold=CUT_THRESHOLD if cut else None)
            rows.append({"variant": variant, "knob": b, **play(s, frames, gt)})
            print(json.dumps(rows[-1]), flush=True)
    for level in map(int, args.levels.split(",")) if "uniform" in variants else ():
        s = build_scheme("uniform", SchemeConfig(**{**cfg.__dict__, "level": level}), model)
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
    print(json.dumps({"clip": args.clip, "frames": args.frames, "fps": args.fps,
                      "saving_vs_uniform_at_equal_key_pa": savings, "runs": rows}, indent=1))


if __name__ == "__main__":
    main()
