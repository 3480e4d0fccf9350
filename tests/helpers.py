"""Small helpers shared by the test modules (importable: pytest puts tests/ on sys.path)."""

import signal
import subprocess

from stac.schemes import Scheme, Stream, make_scheme


def build_scheme(name: str, model, size: tuple[int, int], source_fps: float = 25.0,
                 schedule: dict | None = None, **params) -> Scheme:
    """Scheme `name` with `params`, built for a `size` (w, h) stream at `source_fps`."""
    stream = Stream(source_fps=source_fps, frame_size=size, schedule=schedule or {})
    return make_scheme(name, params).build(stream, model)


def stop_process(proc: subprocess.Popen, grace: float = 15.0) -> int:
    """Resume (if stopped) and SIGTERM `proc`, SIGKILL after `grace` seconds; its exit code."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGCONT)
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode
