"""OUT/ replaced whole (mdp_trt/outdir.py): the old OUT or the new one, never a mixture, nothing left over."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import onnx
import pytest

from mdp_trt import outdir
from mdp_trt.cli import main
from mdp_trt.errors import InputError
from mdp_trt.outdir import STALE_AFTER_S, check_output, clean_stale, staged_output
from mdp_trt.zoo import build as zoo_build

OWNED = frozenset({"plan.json", "report.json", "model.pruned.onnx", "pareto.png"})


def snapshot(folder: Path) -> dict[str, tuple]:
    """Every entry below `folder` with its kind, bytes, inode and mtime: equal snapshots, untouched folder."""
    found: dict[str, tuple] = {}
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            path = Path(root, name)
            info = path.lstat()
            content = path.read_bytes() if path.is_file() and not path.is_symlink() else None
            found[str(path.relative_to(folder))] = (path.is_dir(), content, info.st_ino, info.st_mtime_ns)
    return found


def previous_build(parent: Path) -> Path:
    out = parent / "out"
    out.mkdir()
    (out / "plan.json").write_text("old plan")
    (out / "report.json").write_text("old report")
    (out / "pareto.png").write_text("old plot")
    return out


def write_new(staging: Path) -> None:
    (staging / "plan.json").write_text("new plan")
    (staging / "report.json").write_text("new report")


def siblings(out: Path) -> list[str]:
    return sorted(p.name for p in out.parent.iterdir() if p.name != out.name)


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_new_out_replaces_the_old_whole(tmp_path: Path) -> None:
    out = previous_build(tmp_path)
    with staged_output(out, OWNED) as staging:
        assert staging.parent == tmp_path and staging.name.startswith(".out.mdp-staging-")
        write_new(staging)
        assert (out / "plan.json").read_text() == "old plan", "OUT untouched until the swap"
    assert sorted(p.name for p in out.iterdir()) == ["plan.json", "report.json"]  # the old plot went with it
    assert (out / "plan.json").read_text() == "new plan"
    assert siblings(out) == [], "no staging or old OUT left beside OUT"


def test_a_folder_where_a_file_goes_is_replaced_not_half_moved(tmp_path: Path) -> None:
    out = previous_build(tmp_path)
    (out / "plan.json").unlink()
    (out / "plan.json").mkdir()
    (out / "plan.json" / "inside").write_text("x")
    with staged_output(out, OWNED) as staging:
        write_new(staging)
    assert (out / "plan.json").read_text() == "new plan" and (out / "report.json").read_text() == "new report"
    assert siblings(out) == []


def test_new_out_and_missing_parents_are_made(tmp_path: Path) -> None:
    out = tmp_path / "a" / "b" / "out"
    with staged_output(out, OWNED) as staging:
        write_new(staging)
    assert (out / "plan.json").read_text() == "new plan"
    assert oct(out.stat().st_mode & 0o777) == oct(0o777 & ~_umask()), "OUT follows the umask (not mkdtemp's 0700)"


def test_an_exception_in_the_build_leaves_the_old_out_exactly_as_it_was(tmp_path: Path) -> None:
    out = previous_build(tmp_path)
    before = snapshot(out)
    with pytest.raises(KeyboardInterrupt), staged_output(out, OWNED) as staging:
        write_new(staging)
        raise KeyboardInterrupt
    assert snapshot(out) == before and siblings(out) == []


def test_a_failed_build_into_a_new_out_leaves_nothing(tmp_path: Path) -> None:
    out = tmp_path / "new" / "out"
    with pytest.raises(RuntimeError), staged_output(out, OWNED) as staging:
        write_new(staging)
        raise RuntimeError("solver crashed")
    assert list(tmp_path.iterdir()) == [], "no OUT, no staging, not even the parent folder made for it"


def test_second_rename_failing_puts_the_old_out_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = previous_build(tmp_path)
    (out / "notes.txt").write_text("mine")
    before = snapshot(out)
    real_rename = os.rename

    def rename(src, dst) -> None:
        if Path(src).name.startswith(".out.mdp-staging-"):
            raise OSError(28, "No space left on device")
        real_rename(src, dst)

    monkeypatch.setattr(outdir.os, "rename", rename)
    with pytest.raises(InputError, match="left as is"), staged_output(out, OWNED) as staging:
        write_new(staging)
    assert snapshot(out) == before and siblings(out) == []


def test_first_rename_failing_leaves_out_untouched(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = previous_build(tmp_path)
    before = snapshot(out)

    def rename(src, dst) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(outdir.os, "rename", rename)
    with pytest.raises(InputError, match="renaming it aside failed"), staged_output(out, OWNED) as staging:
        write_new(staging)
    assert snapshot(out) == before and siblings(out) == []


def test_carrying_user_files_over_failing_partway_leaves_out_untouched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = previous_build(tmp_path)
    for name in ("a.txt", "b.txt", "c.txt"):
        (out / name).write_text(name)
    before = snapshot(out)

    def link(src, dst, **kwargs) -> None:
        if Path(src).name == "b.txt":  # the second of three: neither linked nor copied
            raise OSError(5, "Input/output error", str(src))
        os.symlink(src, dst)

    monkeypatch.setattr(outdir.os, "link", link)
    monkeypatch.setattr(outdir.shutil, "copy2", lambda *a, **k: link(*a, **k))
    with pytest.raises(InputError, match="cannot carry the files"), staged_output(out, OWNED) as staging:
        write_new(staging)
    assert snapshot(out) == before and siblings(out) == []


def test_user_files_are_carried_over_unchanged(tmp_path: Path) -> None:
    out = previous_build(tmp_path)
    (out / "notes.txt").write_text("my notes")
    (out / "model.onnx").write_bytes(b"\x00input model")
    (out / "results").mkdir()
    (out / "results" / "acc.csv").write_text("0.91")
    (out / "link").symlink_to("notes.txt")
    (out / ".staging-abcd1234").mkdir()  # left inside OUT by a killed build of the previous design
    user = {k: v for k, v in snapshot(out).items() if k.split("/")[0] in {"notes.txt", "model.onnx", "results/acc.csv"}}
    with staged_output(out, OWNED) as staging:
        write_new(staging)
    after = snapshot(out)
    for name, (is_dir, content, inode, _) in user.items():
        assert after[name][:3] == (is_dir, content, inode), f"{name} kept, same bytes, same file (hard link)"
    assert os.readlink(out / "link") == "notes.txt"
    assert (out / "results").is_dir() and not (out / ".staging-abcd1234").exists()
    assert not (out / "pareto.png").exists(), "a name build writes goes with the old build"


def test_stale_staging_of_a_dead_build_is_cleaned(tmp_path: Path) -> None:
    out = previous_build(tmp_path)
    stale = tmp_path / f".out.mdp-staging-{outdir._host()}-{dead_pid()}-0123abcd"
    stale.mkdir()
    (stale / "plan.json").write_text("half")
    with staged_output(out, OWNED) as staging:
        write_new(staging)
    assert not stale.exists() and siblings(out) == []


def test_a_concurrent_builds_staging_is_not_deleted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = previous_build(tmp_path)
    real_time = time.time
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        running = tmp_path / f".out.mdp-staging-{outdir._host()}-{sleeper.pid}-0123abcd"
        other_host = tmp_path / f".out.mdp-staging-elsewhere-{dead_pid()}-4567cdef"
        for folder in (running, other_host):
            folder.mkdir()
        assert clean_stale(out) == []
        with staged_output(out, OWNED) as staging:
            write_new(staging)
        assert running.is_dir() and other_host.is_dir()
        monkeypatch.setattr(outdir.time, "time", lambda: real_time() + STALE_AFTER_S + 60)
        assert set(clean_stale(out)) == {running, other_host}, "untouched for a day: stale whoever runs (pid reuse)"
    finally:
        sleeper.kill()
        sleeper.wait()


def test_an_old_out_left_aside_by_a_kill_between_the_renames_is_put_back(tmp_path: Path) -> None:
    out = previous_build(tmp_path)
    before = snapshot(out)
    aside = tmp_path / f".out.mdp-old-{outdir._host()}-{dead_pid()}-89abcdef"
    out.rename(aside)
    assert clean_stale(out) == [aside]
    assert snapshot(out) == before and siblings(out) == []


def test_an_old_out_left_aside_after_the_swap_is_removed(tmp_path: Path) -> None:
    out = previous_build(tmp_path)
    aside = tmp_path / f".out.mdp-old-{outdir._host()}-{dead_pid()}-89abcdef"
    aside.mkdir()
    with staged_output(out, OWNED) as staging:
        write_new(staging)
    assert not aside.exists() and (out / "plan.json").read_text() == "new plan"


KILLED = """
import os, sys, time
from pathlib import Path
from mdp_trt import outdir
out, moment = Path(sys.argv[1]), sys.argv[2]
real_rename = os.rename

def rename(src, dst):
    real_rename(src, dst)
    if moment == "between the renames" and ".mdp-old-" in str(dst):
        print("ready", flush=True)
        time.sleep(60)

outdir.os.rename = rename
with outdir.staged_output(out, {"plan.json", "report.json"}) as staging:
    (staging / "plan.json").write_text("half")
    if moment == "while staging":
        print("ready", flush=True)
        time.sleep(60)
"""


@pytest.mark.parametrize("moment", ["while staging", "between the renames"])
def test_a_build_killed_with_sigkill_is_cleaned_up_by_the_next(tmp_path: Path, moment: str) -> None:
    out = previous_build(tmp_path)
    (out / "notes.txt").write_text("mine")
    before = snapshot(out)
    child = subprocess.Popen([sys.executable, "-c", KILLED, str(out), moment], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "ready"
        assert siblings(out), "the killed build left its folder beside OUT"
    finally:
        child.kill()
        child.wait()
    assert out.exists() == (moment == "while staging")
    with staged_output(out, OWNED) as staging:
        write_new(staging)
    assert siblings(out) == [] and (out / "plan.json").read_text() == "new plan"
    assert snapshot(out)["notes.txt"][:3] == before["notes.txt"][:3], "the old OUT, put back, gave its files over"


def test_outs_that_cannot_be_replaced_whole_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match="is a file"):
        check_output(tmp_path / "file")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InputError, match="current folder"):
        check_output(Path("."))
    with pytest.raises(InputError, match="current folder"):
        check_output(tmp_path.parent)
    with pytest.raises(InputError, match="mount point"):
        check_output(Path("/proc"))
    check_output(Path("out"))


def test_a_symlinked_out_is_replaced_at_its_target(tmp_path: Path) -> None:
    real = previous_build(tmp_path)
    link = tmp_path / "latest"
    link.symlink_to(real)
    with staged_output(link, OWNED) as staging:
        write_new(staging)
    assert link.is_symlink() and (link / "plan.json").read_text() == "new plan"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@pytest.fixture()
def analytic_build(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """`build` of the toy with analytic estimates (instant), compiling by writing a stand-in engine."""
    import mdp_trt.build as build_module

    def fake_compile(model, backend, out_dir, **kwargs) -> SimpleNamespace:
        (out_dir / "model.ort.onnx").write_bytes(model.SerializeToString())
        return SimpleNamespace(engine=out_dir / "model.ort.onnx")

    monkeypatch.setattr(build_module, "compile_model", fake_compile)
    onnx.save(zoo_build("toy", input_size=16), tmp_path / "toy.onnx")

    def run(out: Path) -> int:
        return main(["build", str(tmp_path / "toy.onnx"), "--backend", "analytic", "--fps", "0.001", "--grid", "2",
                     "--no-plots", "--db", str(tmp_path / "lat.sqlite"), "-o", str(out)])

    return run, build_module, monkeypatch


def test_build_replaces_out_whole_and_keeps_the_users_files(tmp_path: Path, analytic_build) -> None:
    run, _, _ = analytic_build
    out = tmp_path / "out"
    out.mkdir()
    (out / "plan.json").mkdir()  # the case: a folder where build writes a file
    (out / "pareto.png").write_text("a plot of an older build")
    (out / "notes.txt").write_text("mine")
    assert run(out) == 0
    assert (out / "plan.json").is_file() and json.loads((out / "report.json").read_text())["measured"]
    assert (out / "notes.txt").read_text() == "mine" and not (out / "pareto.png").exists()
    assert siblings(out) == ["lat.sqlite", "toy.onnx"]


def test_an_interrupted_build_leaves_the_old_out_exactly_as_it_was(tmp_path: Path, analytic_build) -> None:
    run, build_module, monkeypatch = analytic_build
    out = tmp_path / "out"
    assert run(out) == 0
    before = snapshot(out)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(build_module, "compile_model", interrupted)  # a Ctrl-C with the new OUT half staged
    run(out)
    assert snapshot(out) == before and siblings(out) == ["lat.sqlite", "toy.onnx"]
