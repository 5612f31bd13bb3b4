"""Atomic file output: a reader never sees a half-written file, a failure leaves nothing behind.

Every file mdp-trt writes goes through here, so all of them follow the umask and every JSON file is
strict JSON (no NaN or Infinity, which `json.loads` accepts but other readers refuse).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import onnx

from mdp_trt.errors import InputError


@contextlib.contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """Yield a temporary path beside `target`; on success it replaces `target`, on error it is removed.

    A target that is a folder, or whose folder cannot be made or written, is an `InputError` (a path
    the user gave) raised before anything is written.
    """
    target = Path(target)
    if target.is_dir():
        raise InputError(f"{target} is a folder; give a file name to write")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as exc:
        raise InputError(f"cannot write {target}: {exc.strerror or exc}") from None
    os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600 files; outputs follow the umask
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text_atomic(target: Path, text: str) -> None:
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json_atomic(target: Path, document: Any, indent: int | None = 1) -> None:
    """Write strict JSON: a NaN or infinity raises ValueError (a bug of ours) before anything is written."""
    write_text_atomic(target, json.dumps(document, indent=indent, allow_nan=False) + "\n")


def check_writable(target: Path, option: str, folder: bool = False) -> None:
    """Refuse, before any work, an output path that cannot be written: a file where a folder is wanted
    (or the reverse), or a path below a file or an unwritable folder. `option` names it in the message."""
    target = Path(target)
    wanted = "a folder" if folder else "a file"
    if target.exists() and target.is_dir() != folder:
        raise InputError(f"{option} {target} is {'a file' if folder else 'a folder'}; give {wanted} to write")
    parent = target.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise InputError(f"{option} {target}: {parent} is a file, so {wanted} cannot be made below it")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InputError(f"{option} {target}: the folder {parent} is not writable")


def save_model_atomic(model: onnx.ModelProto, target: Path) -> None:
    """Save a model; models over protobuf's 2 GB limit go to one external-data file beside it."""
    save_models_atomic([(model, Path(target))])


def save_models_atomic(models: Sequence[tuple[onnx.ModelProto, Path]]) -> None:
    """Save several models all or none: each is written to a temporary file beside its target, and they
    replace their targets only once every one is saved (a target that is a folder is refused by
    `atomic_path` before its model is written, and the temporary files saved so far are removed)."""
    with contextlib.ExitStack() as stack:
        for model, target in models:
            tmp = stack.enter_context(atomic_path(target))
            if model.ByteSize() > 1_800_000_000:
                onnx.save_model(model, str(tmp), save_as_external_data=True, all_tensors_to_one_file=True,
                                location=f"{Path(target).name}.data")
            else:
                onnx.save_model(model, str(tmp))
