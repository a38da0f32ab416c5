"""Safe, atomic file I/O: nothing half-written is ever left under the final name, nothing is unpickled."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from globaldiff import ConfigError


def _alive(pid: int) -> bool:
    """Whether process `pid` exists (a process we may not signal exists too)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def clear_stale_temporaries(final: str | os.PathLike) -> list[Path]:
    """Remove the temporary folders that a killed writer of `final` left beside it; return them.

    SIGKILL (or a power cut) skips every `finally`, so `atomic_path` names its folder after the writing
    process (`.<name>.pid<PID>.<random>.tmp`) and the next writer of the same path removes the folders
    whose process is gone. Folders of live processes are left alone.
    """
    final = Path(final)
    pattern = re.compile(rf"\.{re.escape(final.name)}\.pid([0-9]+)\.[^.]+\.tmp")
    removed = []
    if final.parent.is_dir():
        for path in final.parent.iterdir():
            m = pattern.fullmatch(path.name)
            if m and not _alive(int(m.group(1))):
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path)
    return removed


@contextlib.contextmanager
def atomic_path(final: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `final`; rename it to `final` only if the block succeeds.

    Works for files and for directories (the caller creates whichever it needs at the yielded path). An
    interrupted block (an exception, Ctrl-C) leaves `final` as it was and removes the temporary; a killed
    process cannot clean up, and its temporary is removed by the next write of `final`.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    clear_stale_temporaries(final)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.pid{os.getpid()}.", suffix=".tmp", dir=final.parent))
    target = tmp / final.name
    try:
        yield target
        # A file replaces a file in one step (os.replace), so `final` is never missing on the way; a folder
        # cannot replace a folder (or a file) that way and the old one is removed first.
        if final.is_dir() and not final.is_symlink():
            shutil.rmtree(final)
        elif target.is_dir() and (final.exists() or final.is_symlink()):
            final.unlink()
        os.replace(target, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}: line {e.lineno}: not valid JSON ({e.msg})") from None


def check_finite(path: str | os.PathLike, array: np.ndarray, action: str = "holds") -> None:
    """Refuse a floating array with NaN or inf (never a score, a weight or a metric): ConfigError naming `path`."""
    if np.issubdtype(array.dtype, np.inexact):
        bad = ~np.isfinite(array)
        if bad.any():
            first = tuple(int(i) for i in np.argwhere(bad)[0])
            raise ConfigError(f"{path}: {action} {int(bad.sum())} NaN or inf value(s) of {array.size} (first at "
                              f"index {first}): expected finite numbers; re-run the stage that writes it")


def save_npy(path: str | os.PathLike, array: np.ndarray) -> None:
    """Write a numeric .npy array; NaN or inf is refused (nothing is written)."""
    check_finite(path, array, "refusing to write")
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, array, allow_pickle=False)


def load_npy(path: str | os.PathLike) -> np.ndarray:
    """A finite numeric .npy array; object arrays are refused (they would need unpickling), as are NaN and inf;
    a damaged file is a ConfigError."""
    try:
        array = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except (ValueError, OSError, EOFError) as e:
        raise ConfigError(f"{path}: not a readable numeric .npy array ({e}); re-run the stage that writes it") from None
    check_finite(path, array)
    return array


def _tensors(obj: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted name, tensor) of every tensor in nested dicts, lists and tuples."""
    import torch

    if isinstance(obj, torch.Tensor):
        yield prefix or "(the checkpoint)", obj
    elif isinstance(obj, dict):
        for key, value in obj.items():
            yield from _tensors(value, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(obj, (list, tuple)):
        for i, value in enumerate(obj):
            yield from _tensors(value, f"{prefix}[{i}]")


def check_finite_tensors(path: str | os.PathLike, obj: Any, action: str = "holds") -> None:
    """Refuse a checkpoint with a NaN or inf in any floating tensor: ConfigError naming `path` and the tensor."""
    import torch

    for name, tensor in _tensors(obj):
        if (tensor.is_floating_point() or tensor.is_complex()) and not bool(torch.isfinite(tensor).all()):
            count = int((~torch.isfinite(tensor)).sum())
            raise ConfigError(f"{path}: {action} tensor '{name}' with {count} NaN or inf value(s) of "
                              f"{tensor.numel()}: expected finite weights (a diverged training?); re-run the stage "
                              "that writes it")


def save_torch(path: str | os.PathLike, obj: dict) -> None:
    """Save a dict of tensors and plain values (loadable with weights_only=True); NaN or inf is refused."""
    import torch

    check_finite_tensors(path, obj, "refusing to write")
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def _load_failure(path: Path, e: Exception) -> str:
    """The real reason a torch.load failed, without torch's advice to load with weights_only=False (that would
    run whatever the file holds)."""
    if path.is_file():
        with open(path, "rb") as f:
            if f.read(4) != b"PK\x03\x04":  # torch.save writes a zip archive; anything else would be a pickle
                return "not a file written by torch.save: no zip archive header"
    text = str(e).strip()
    m = re.search(r"WeightsUnpickler error: (.*?)(?:\. Please use|\n|$)", text)
    if m:  # an object outside torch's list of safe types: the one thing the file must never make us rebuild
        return f"it holds an object that is not a tensor or a plain value: {m.group(1).rstrip('.')}"
    lines = [line.strip() for line in text.splitlines() if line.strip() and "weights_only" not in line]
    reason = lines[0] if lines else ""
    reason = re.sub(r"(PytorchStreamReader failed [^:]*: [^.]*)\..*", r"\1", reason)  # drop torch's guesswork
    return f"{type(e).__name__}: {reason}" if reason else type(e).__name__


def load_torch(path: str | os.PathLike, map_location: str = "cpu") -> dict:
    """A checkpoint dict of finite tensors and plain values, loaded with weights_only=True (nothing unpickled);
    anything else is a ConfigError naming the file and the reason."""
    import torch

    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise ConfigError(f"{path}: checkpoint not found") from None
    except Exception as e:  # truncated/corrupt archive, or objects that weights_only refuses to rebuild
        raise ConfigError(f"{path}: not a readable checkpoint of tensors and plain values "
                          f"({_load_failure(Path(path), e)}); re-run the stage that writes it") from None
    if not isinstance(obj, dict):
        raise ConfigError(f"{path}: expected a checkpoint dict, got {type(obj).__name__}; re-run the stage that writes it")
    check_finite_tensors(path, obj)
    return obj
