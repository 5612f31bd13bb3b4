"""OUT/ replaced as a whole: a build's output appears all at once or not at all.

The new OUT is written into a staging folder *beside* OUT (same parent, so same filesystem, so every
rename below is atomic), then swapped in: the old OUT is renamed aside, the staging folder renamed to
OUT, the old one removed. Until the first rename OUT is untouched; if the second rename fails the
first is undone. A reader of OUT therefore sees the previous build or the new one, never a mixture
(the previous design moved files into OUT one by one, and a move failing partway left half of each).

Files of the user's in an existing OUT are carried over into the new OUT, not refused and not lost.
OUT holds one build: entries under a name build writes (`owned`) belong to the build they came from
and are replaced or dropped with it, so a `--no-plots` build leaves no stale plot of an older one.
Everything else (notes, the input model, a folder of results) is the user's: refusing such an OUT
would make a second build into a folder the user annotated fail for no reason, and deleting it would
be unforgivable. It is hard-linked into the staging folder just before the swap (copied where the
filesystem refuses links), which costs neither time nor space and keeps every byte and timestamp.

A build killed with SIGKILL leaves its staging folder (or, between the two renames, the old OUT
aside) beside OUT under a recognisable hidden name that carries host and pid:
`.OUT.mdp-staging-<host>-<pid>-<random>` and `.OUT.mdp-old-<host>-<pid>-<random>`. The next build
into the same OUT removes a staging folder whose process is gone (or, from another host or a reused
pid, that is older than `STALE_AFTER_S`), and moves an old OUT left aside back into place when OUT is
missing. A folder of a build still running is never touched.

Two refusals, as one-line InputErrors: an OUT that is (or holds) the current folder, since renaming it
would pull the folder out from under the user's shell, and an OUT that cannot be renamed at all (a
mount point, or a parent folder that cannot be written). `check_output` makes them, so that a caller
can refuse such an OUT before any work; `staged_output` makes them again.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import socket
import stat
import time
from collections.abc import Collection, Iterator
from pathlib import Path

from mdp_trt.errors import InputError

# A staging folder untouched this long is stale even if a process of its pid seems to run (another
# host shares the folder, or the pid was reused after a reboot). A build's staging phase (compiling
# a TensorRT engine) takes minutes, so a day leaves a wide margin.
STALE_AFTER_S = 24 * 3600.0

_STAGING, _OLD = "staging", "old"
# What the previous implementation left inside OUT when killed: build's own, so never carried over.
_LEGACY_STAGING = re.compile(r"\.staging-[a-z0-9_]{8}")


def check_output(out_dir: Path) -> None:
    """Refuse, before any work, an OUT that cannot be replaced whole (see the module docstring)."""
    out = _real(out_dir)
    if out.exists() and not out.is_dir():
        raise InputError(f"-o {out_dir} is a file; build writes a folder (OUT/model.pruned.onnx, ...)")
    cwd = Path.cwd().resolve()
    if cwd == out or out in cwd.parents:
        raise InputError(f"-o {out_dir} is the current folder or holds it: build replaces OUT whole, which "
                         "would pull it from under your shell; give a folder of its own (e.g. -o out/)")
    if out.exists() and os.path.ismount(out):
        raise InputError(f"-o {out_dir} is a mount point, which cannot be replaced whole; give a folder inside it")
    parent = out.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise InputError(f"-o {out_dir}: its parent folder {parent} is not writable, and build writes the new "
                         "OUT beside the old one before swapping it in")


@contextlib.contextmanager
def staged_output(out_dir: Path, owned: Collection[str] = ()) -> Iterator[Path]:
    """Yield an empty staging folder beside OUT; on success it replaces OUT whole, on failure it is removed.

    `owned` are the names build writes: entries of the old OUT under them are replaced or dropped,
    every other entry is carried over. Whatever fails before the swap (the body, carrying the user's
    files over, the first rename) leaves the old OUT exactly as it was.
    """
    check_output(out_dir)
    out = _real(out_dir)
    made = _make_parents(out.parent)
    staging: Path | None = None
    try:
        clean_stale(out)
        staging = _new_sibling(out, _STAGING)
        yield staging
        if out.is_dir():
            _carry_over(out, staging, owned)
        _swap(out, staging)
    except BaseException:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
        for folder in made:  # innermost first; only folders this call made, and only while empty
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise


def clean_stale(out_dir: Path) -> list[Path]:
    """Remove what killed builds left beside OUT; returns the paths removed or moved back into place.

    A staging folder goes when its process is gone (same host) or it is older than STALE_AFTER_S. An
    old OUT left aside goes back to OUT's name if OUT is missing (the build died between its two
    renames), and is removed otherwise (it had been replaced: the user's files were carried over).
    """
    out = _real(out_dir)
    pattern = re.compile(re.escape(f".{out.name}.mdp-") + rf"({_STAGING}|{_OLD})-([A-Za-z0-9_]+)-(\d+)-[0-9a-f]{{8}}")
    done: list[Path] = []
    try:
        siblings = sorted(out.parent.iterdir())
    except OSError:
        return done
    for path in siblings:
        match = pattern.fullmatch(path.name)
        if match is None or not path.is_dir() or path.is_symlink():
            continue
        kind, host, pid = match.group(1), match.group(2), int(match.group(3))
        if not _is_stale(path, host, pid):
            continue
        if kind == _OLD and not out.exists():
            with contextlib.suppress(OSError):
                os.rename(path, out)
                done.append(path)
            continue
        shutil.rmtree(path, ignore_errors=True)
        done.append(path)
    return done


def _swap(out: Path, staging: Path) -> None:
    """Old OUT aside, staging in, old removed; a failing second rename puts the old OUT back."""
    aside = _new_sibling(out, _OLD, make=False)
    try:
        os.rename(out, aside)
    except FileNotFoundError:
        aside = None  # there was no OUT (or another process moved it meanwhile): nothing to keep
    except OSError as exc:
        raise InputError(f"cannot replace {out}: renaming it aside failed ({exc.strerror}); it was left as is") \
            from None
    try:
        os.rename(staging, out)
    except OSError as exc:
        if aside is None:
            raise InputError(f"cannot write {out}: {exc.strerror}") from None
        try:
            os.rename(aside, out)
        except OSError:
            kept = out.with_name(f"{out.name}.previous-{os.getpid()}")
            try:
                os.rename(aside, kept)  # something else took OUT's name meanwhile: keep the old OUT visible
            except OSError:
                kept = aside
            raise InputError(f"cannot replace {out}: another process wrote it meanwhile; the OUT it replaced "
                             f"is kept at {kept}") from None
        raise InputError(f"cannot replace {out}: {exc.strerror}; it was left as is") from None
    if aside is not None:
        shutil.rmtree(aside, ignore_errors=True)  # what cannot be removed now, the next build removes


def _carry_over(out: Path, staging: Path, owned: Collection[str]) -> None:
    """Hard-link (or copy) every entry of OUT that build does not own into the staging folder, then give
    the staging folder OUT's mode (last: a read-only OUT would refuse the links)."""
    try:
        for entry in sorted(out.iterdir()):
            name = entry.name
            if name in owned or _LEGACY_STAGING.fullmatch(name) or os.path.lexists(staging / name):
                continue
            _link_tree(entry, staging / name, out)
        os.chmod(staging, stat.S_IMODE(out.stat().st_mode))
    except OSError as exc:
        raise InputError(f"cannot carry the files of -o {out} over into the new OUT ({exc.strerror}: "
                         f"{exc.filename}); it was left as is") from None


def _link_tree(src: Path, dst: Path, out: Path) -> None:
    info = src.lstat()
    if stat.S_ISLNK(info.st_mode):
        os.symlink(os.readlink(src), dst)
    elif stat.S_ISDIR(info.st_mode):
        if os.path.ismount(src):
            raise InputError(f"{src} is a mount point inside -o {out}: build replaces OUT whole and cannot "
                             "carry it over; unmount it or give another OUT")
        dst.mkdir()
        for child in sorted(src.iterdir()):
            _link_tree(child, dst / child.name, out)
        shutil.copystat(src, dst, follow_symlinks=False)
    elif stat.S_ISREG(info.st_mode):
        try:
            os.link(src, dst, follow_symlinks=False)
        except OSError:
            shutil.copy2(src, dst, follow_symlinks=False)  # a filesystem or a policy without hard links
    else:
        raise InputError(f"{src} in -o {out} is not a file, folder or link: build replaces OUT whole and cannot "
                         "carry it over; move it out of OUT")


def _is_stale(path: Path, host: str, pid: int) -> bool:
    """Its process is gone (same host), or it has not been touched for STALE_AFTER_S. Touched means its
    ctime: a file added to a staging folder changes it, and so does the rename that set an old OUT aside
    (whose mtime may be days old)."""
    try:
        age = time.time() - path.lstat().st_ctime
    except OSError:
        return False
    if age > STALE_AFTER_S:
        return True
    return host == _host() and pid != os.getpid() and not _alive(pid)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9]", "_", socket.gethostname()) or "host"


def _new_sibling(out: Path, kind: str, make: bool = True) -> Path:
    """A fresh hidden path beside OUT naming host and pid, so `clean_stale` can tell whose it is."""
    while True:
        path = out.with_name(f".{out.name}.mdp-{kind}-{_host()}-{os.getpid()}-{secrets.token_hex(4)}")
        if not make:
            if not os.path.lexists(path):
                return path
            continue
        try:
            path.mkdir()  # mode from the umask, as every output (mkdtemp would make it 0700)
            return path
        except FileExistsError:
            continue
        except OSError as exc:
            raise InputError(f"cannot write beside {out}: {exc.strerror}") from None


def _make_parents(folder: Path) -> list[Path]:
    """Make `folder` and its missing parents; returns the ones made, innermost first."""
    missing = [p for p in (folder, *folder.parents) if not p.exists()]
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot make the folder {folder}: {exc.strerror}") from None
    return missing


def _real(out_dir: Path) -> Path:
    """OUT with symlinks resolved: a link to a folder is replaced at its target, and the link kept."""
    return Path(os.path.realpath(out_dir))

