"""`forge rm`/`gc` delete only Forge's own leftovers, and only while holding the step's lock
from the check through the delete."""

from __future__ import annotations

from pathlib import Path

from tasks.cli.cleanup import Doomed, delete, plan_gc
from tasks.store.names import DIGEST_FILE, SUCCESS
from tests.support import hold_lock_elsewhere


def _step(path: Path, *, complete: bool = False) -> Path:
    path.mkdir(parents=True)
    (path / DIGEST_FILE).write_text("d\n")
    (path / "config.yaml").write_text("x: 1\n")
    if complete:
        (path / SUCCESS).write_text("")
    return path


def test_gc_never_takes_a_users_dot_tmp_file(tmp_path: Path) -> None:
    data = _step(tmp_path / "moons-1234", complete=True)
    user = data / ".tmp-2024-notes.txt"
    user.write_text("mine")
    forged = data / ".tmp-999999-0123abcd-data.h5"  # pid 999999: no such process
    forged.write_text("partial")
    planned = [d.path for d in plan_gc(tmp_path)]
    assert forged in planned and user not in planned


def test_a_step_a_run_holds_after_the_prompt_is_skipped_not_deleted(tmp_path: Path) -> None:
    step = _step(tmp_path / "moons-1234" / "mlp-5678" / "default-9abc")
    planned = plan_gc(tmp_path)
    assert [d.path for d in planned] == [step]
    holder = hold_lock_elsewhere(step, 60)  # a resumed Train starts after the listing
    try:
        skipped = delete(planned)
    finally:
        holder.kill()
        holder.wait()
    assert skipped == planned and (step / "config.yaml").exists()


def test_a_step_that_completed_after_the_listing_is_kept(tmp_path: Path) -> None:
    step = _step(tmp_path / "moons-1234")
    planned = plan_gc(tmp_path)
    (step / SUCCESS).write_text("")
    assert delete(planned) == planned and (step / SUCCESS).exists()


def test_rm_removes_the_marker_first_and_everything_with_it(tmp_path: Path) -> None:
    step = _step(tmp_path / "moons-1234" / "mlp-5678" / "default-9abc", complete=True)
    evaluation = _step(step / "eval" / "default-0000", complete=True)
    assert delete([Doomed(step, "experiment", 0)]) == []
    assert not step.exists() and not evaluation.exists()
