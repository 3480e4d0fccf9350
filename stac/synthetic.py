"""Synthetic camera motion over a CamVid still: pans, zooms and shakes rendered on the fly.

Issue 16's development set beyond the two real clips (labelled *synthetic*: a moving window
over one photograph, so no object moves, nothing is occluded, there is no motion blur and
no sensor noise). A clip is named by a spec that `stac.frames.open_source` (and so every
`--video` option and sweep) accepts:

    synthetic:camvid-val/0016E5_07959?motion=pan&seconds=6&fps=30&seed=0

`camvid-SPLIT/STEM` is the image `SPLIT/STEM.png` of the CamVid root under the data root
(`stac.data.data_root()`, `$STAC_DATA`); the query is optional (defaults shown). Source
frame i is the still seen through a camera window at time t = i / fps (`camera_path`):

- `pan`: a window 0.6 of the still's width sweeps left to right at constant speed over
  the clip (about 10 px per frame at 30 fps over a 960-px still, 6 s);
- `zoom`: a centred window shrinks geometrically from 0.9 to 0.45 of the still's width
  (a 2x zoom in over the clip);
- `shake`: a window 0.8 of the width whose centre and roll follow a sum of three
  sinusoids (1.3, 2.9 and 5.3 Hz; phases from `seed` and the still's name), amplitude
  2.5% of the width and 1 degree: a hand-held camera.

Rendering is deterministic (same spec, same size: the same bytes): the still is resized
with area averaging to the window's scale, then warped (bilinear, reflected border) to
the output size; CamVid's label map is warped with nearest-neighbour sampling. Nothing is
written to disk.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl

import cv2
import numpy as np

PREFIX = "synthetic:"
MOTIONS = ("pan", "zoom", "shake")
DEFAULT_SIZE = (480, 360)
# The development set (docs/stac.md, "stac-plus"): three CamVid val stills of different
# street scenes (frames several seconds apart in sequence 0016E5), one motion each.
DEV_SET = (
    "synthetic:camvid-val/0016E5_07965?motion=pan",
    "synthetic:camvid-val/0016E5_08085?motion=zoom",
    "synthetic:camvid-val/0016E5_08157?motion=shake",
)
_PAN_WIDTH, _SHAKE_WIDTH, _ZOOM = 0.6, 0.8, (0.9, 0.45)
_SHAKE_HZ = np.array([1.3, 2.9, 5.3])
_SHAKE_AMPLITUDE, _SHAKE_DEGREES = 0.025, 1.0


class SyntheticError(ValueError):
    """A synthetic clip spec is malformed or names a still that does not exist."""


@dataclass(frozen=True)
class SyntheticSpec:
    """A synthetic clip: CamVid `split`, image `still` (file stem), `motion`, length in
    `seconds`, source frame rate `fps` and the `seed` of the shake's phases."""

    split: str
    still: str
    motion: str
    seconds: float = 6.0
    fps: float = 30.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.motion not in MOTIONS:
            raise SyntheticError(f"synthetic clip {self.still!r}: motion must be one of "
                                 f"{', '.join(MOTIONS)}, got {self.motion!r}")
        for key in ("seconds", "fps"):
            value = getattr(self, key)
            if not (math.isfinite(value) and value > 0):
                raise SyntheticError(f"synthetic clip {self.still!r}: {key} must be a positive "
                                     f"number, got {value!r}")

    @property
    def frames(self) -> int:
        """Source frames in the clip: round(seconds x fps), at least 1."""
        return max(1, round(self.seconds * self.fps))

    @property
    def name(self) -> str:
        """A file-name-safe name that differs for every distinct clip (caches key on it)."""
        return (f"synthetic-{self.split}-{self.still}-{self.motion}-{self.seconds:g}s-"
                f"{self.fps:g}fps-seed{self.seed}")


def is_synthetic(spec: object) -> bool:
    """Whether a `--video` value names a synthetic clip (``synthetic:...``)."""
    return isinstance(spec, str) and spec.startswith(PREFIX)


def parse_spec(text: str) -> SyntheticSpec:
    """``synthetic:camvid-SPLIT/STEM[?motion=...&seconds=...&fps=...&seed=...]`` -> spec."""
    if not is_synthetic(text):
        raise SyntheticError(f"{text!r}: a synthetic clip spec starts with {PREFIX!r}")
    body, _, query = text[len(PREFIX):].partition("?")
    dataset, _, still = body.partition("/")
    if not dataset.startswith("camvid-") or not still or "/" in still:
        raise SyntheticError(f"{text!r}: expected {PREFIX}camvid-SPLIT/STILL[?motion=pan|zoom|"
                             "shake&seconds=S&fps=F&seed=N]")
    known = {"motion": str, "seconds": float, "fps": float, "seed": int}
    args: dict = {}
    for key, value in parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query)):
        if key not in known:
            raise SyntheticError(f"{text!r}: unknown parameter {key!r} (known: "
                                 f"{', '.join(known)})")
        try:
            args[key] = known[key](value)
        except ValueError:
            raise SyntheticError(f"{text!r}: {key}={value!r} is not a "
                                 f"{known[key].__name__}") from None
    if "motion" not in args:
        raise SyntheticError(f"{text!r}: name a motion (?motion=pan, zoom or shake)")
    return SyntheticSpec(split=dataset[len("camvid-"):], still=Path(still).stem, **args)


def camera_path(spec: SyntheticSpec, aspect: float, still_size: tuple[int, int]) -> np.ndarray:
    """(frames, 4): per source frame the window's centre (x, y) and width in still pixels,
    and its roll in degrees; `aspect` is the output's width / height."""
    w, h = still_size
    t = np.arange(spec.frames) / spec.fps
    u = t / max(spec.seconds, 1e-9)  # 0 ... <1 over the clip
    fit = min(1.0, h * aspect / w)  # the widest window of the output's aspect that fits
    roll = np.zeros_like(t)
    if spec.motion == "pan":
        width = np.full_like(t, _PAN_WIDTH * w * fit)
        cx = width / 2 + (w - width) * u
        cy = np.full_like(t, h / 2)
    elif spec.motion == "zoom":
        width = w * fit * _ZOOM[0] * (_ZOOM[1] / _ZOOM[0]) ** u
        cx, cy = np.full_like(t, w / 2), np.full_like(t, h / 2)
    else:  # shake: phases fixed by the seed and the still, never by the run
        rng = np.random.default_rng([spec.seed, zlib.crc32(spec.still.encode())])
        phase = rng.uniform(0, 2 * np.pi, size=(3, _SHAKE_HZ.size))
        waves = np.sin(2 * np.pi * _SHAKE_HZ * t[:, None] + phase[:, None, :]).sum(axis=2)
        waves /= _SHAKE_HZ.size  # (3, frames) in [-1, 1]
        width = np.full_like(t, _SHAKE_WIDTH * w * fit)
        cx = w / 2 + _SHAKE_AMPLITUDE * w * waves[0]
        cy = h / 2 + _SHAKE_AMPLITUDE * w * waves[1]
        roll = _SHAKE_DEGREES * waves[2]
    return np.stack([cx, cy, width, roll], axis=1)


def render(still: np.ndarray, pose: np.ndarray, size: tuple[int, int],
           nearest: bool = False) -> np.ndarray:
    """The still seen through the window `pose` (cx, cy, width, roll) at `size` (w, h)."""
    out_w, out_h = size
    cx, cy, width, roll = (float(v) for v in pose)
    scale = out_w / width  # output pixels per still pixel
    if nearest:
        small, k = still, 1.0
    else:  # area-average to about the output's scale first: no aliasing in the warp
        sw = max(1, round(still.shape[1] * scale))
        sh = max(1, round(still.shape[0] * scale))
        small = cv2.resize(still, (sw, sh), interpolation=cv2.INTER_AREA)
        k = sw / still.shape[1]
    # output pixel centre (u + 0.5) maps to the small still at its window centre
    m = cv2.getRotationMatrix2D((cx * k, cy * k), roll, scale / k)
    m[:, 2] += np.array([out_w / 2, out_h / 2]) - np.array([cx * k, cy * k])
    interp = cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR
    border = cv2.BORDER_REPLICATE if nearest else cv2.BORDER_REFLECT
    return cv2.warpAffine(small, m, (out_w, out_h), flags=interp | cv2.WARP_FILL_OUTLIERS,
                          borderMode=border)


class SyntheticSource:
    """A synthetic clip as a frame source (`stac.frames.VideoSource`'s interface)."""

    def __init__(self, spec: SyntheticSpec, root: Path, size: tuple[int, int] | None = None,
                 fps: float | None = None, max_frames: int | None = None) -> None:
        from stac.frames import _check_size, _read_label, _read_rgb

        self.spec = spec
        self.name = spec.name
        self.still_path = root / spec.split / f"{spec.still}.png"
        if not self.still_path.is_file():
            raise SyntheticError(f"{self.still_path}: no such CamVid still for synthetic clip "
                                 f"{spec.still!r}")
        self.files = [self.still_path]  # what the ground-truth cache fingerprints
        self.source_fps = spec.fps
        if fps is not None and not 0 < fps <= spec.fps + 1e-9:
            raise ValueError(f"{spec.name}: fps {fps} must be in (0, source rate {spec.fps:g}]")
        if max_frames is not None and max_frames < 0:
            raise ValueError(f"max_frames must be >= 0, got {max_frames}")
        self.fps = float(fps) if fps is not None else spec.fps
        self.size = _check_size(size) or DEFAULT_SIZE
        self.max_frames = max_frames
        self._still = _read_rgb(self.still_path)
        label_path = root / f"{spec.split}annot" / self.still_path.name
        self._label = (_read_label(label_path, self._still.shape[:2])
                       if label_path.is_file() else None)
        self._path = camera_path(spec, self.size[0] / self.size[1],
                                 (self._still.shape[1], self._still.shape[0]))

    def __len__(self) -> int:
        n = math.ceil(self.spec.frames * self.fps / self.source_fps - 1e-9)
        return n if self.max_frames is None else min(n, self.max_frames)

    def __iter__(self) -> Iterator:
        from stac.frames import Frame, _pick_indices

        for n, i in _pick_indices(self.source_fps, self.fps):
            if n >= len(self) or i >= self.spec.frames:
                return
            label = None if self._label is None else render(self._label, self._path[i],
                                                            self.size, nearest=True)
            yield Frame(index=n, t=n / self.fps, rgb=render(self._still, self._path[i],
                                                            self.size), label=label)


def open_synthetic(text: str, size: tuple[int, int] | None = None, fps: float | None = None,
                   max_frames: int | None = None, root: Path | None = None) -> SyntheticSource:
    """The synthetic clip `text` names (CamVid under `root`, default the data root's)."""
    if root is None:
        from stac.data import data_root

        root = data_root() / "camvid"
    return SyntheticSource(parse_spec(text), Path(root), size=size, fps=fps,
                           max_frames=max_frames)
