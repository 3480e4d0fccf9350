"""The codec's numba kernels: are they compiled and cached yet? A notice before the first
compile, which takes minutes on a small machine (`cache=True` keeps the result on disk, in
``__pycache__`` beside the sources or in ``$NUMBA_CACHE_DIR``)."""

from __future__ import annotations

import warnings

from stac.notices import CompileNotice

ESTIMATE = "about 1.5 min on an idle 2-core machine, several under load"
_announced = False


def entry_kernels() -> list:
    """The numba functions the encoder and decoder call from Python (compiling one compiles
    and caches the kernels it calls)."""
    from numba.core.dispatcher import Dispatcher

    from stac.codec import decoder, encoder, mb_decoder, mb_encoder

    found = {id(v): v for mod in (encoder, decoder) for v in vars(mod).values()
             if isinstance(v, Dispatcher)}
    for kernel in (mb_encoder.encode_mbs, mb_decoder.decode_mbs):
        found[id(kernel)] = kernel
    return list(found.values())


def uncached(kernels: list) -> list:
    """The kernels with neither a compiled version in this process nor a valid disk cache."""
    missing = []
    for k in kernels:
        try:  # numba's cache index: empty when absent or stale (source changed)
            on_disk = bool(k._cache._cache_file._load_index())
        except Exception:  # another numba version's internals: assume cached, say nothing
            on_disk = True
        if not on_disk and not k.signatures:
            missing.append(k)
    return missing


def announce_compile() -> None:
    """Warn (`CompileNotice`) once per process if the codec is about to be compiled."""
    global _announced
    if _announced:
        return
    _announced = True
    kernels = entry_kernels()
    if missing := uncached(kernels):
        where = missing[0]._cache._cache_path
        warnings.warn(CompileNotice(
            f"compiling the codec once ({len(missing)} of {len(kernels)} numba entry points "
            f"not cached; {ESTIMATE}), cached afterwards in {where}"), stacklevel=3)
