"""Atomic file output: a reader never sees a half-written file, a failure leaves nothing behind."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import onnx


@contextlib.contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """Yield a temporary path beside `target`; on success it replaces `target`, on error it is removed."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
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


def save_model_atomic(model: onnx.ModelProto, target: Path) -> None:
    """Save a model; models over protobuf's 2 GB limit go to one external-data file beside it."""
    save_models_atomic([(model, Path(target))])


def save_models_atomic(models: Sequence[tuple[onnx.ModelProto, Path]]) -> None:
    """Save several models all or none: each is written to a temporary file beside its target, and they
    replace their targets only once every one is saved."""
    with contextlib.ExitStack() as stack:
        for model, target in models:
            tmp = stack.enter_context(atomic_path(target))
            if model.ByteSize() > 1_800_000_000:
                onnx.save_model(model, str(tmp), save_as_external_data=True, all_tensors_to_one_file=True,
                                location=f"{Path(target).name}.data")
            else:
                onnx.save_model(model, str(tmp))
