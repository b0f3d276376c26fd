"""qfcn.io: files readable under the user's umask and a folder lock (issue 13, group 11)."""
import os
import subprocess
import sys

import pytest

from qfcn.io import ROOT, FolderLocked, atomic_write_bytes, atomic_write_json, current_umask, folder_lock


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_written_files_follow_the_umask_not_mkstemp(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        assert current_umask() == umask
        p = atomic_write_json(tmp_path / "summary.json", {"a": 1})
        q = atomic_write_bytes(tmp_path / "ckpt" / "m.pt", b"x")
    finally:
        os.umask(old)
    assert p.stat().st_mode & 0o777 == mode and q.stat().st_mode & 0o777 == mode


def test_folder_lock_refuses_a_second_holder_and_is_released(tmp_path):
    with folder_lock(tmp_path / "out") as lock:
        assert lock.read_text().strip() == str(os.getpid())
        with pytest.raises(FolderLocked, match=rf"another process \(pid {os.getpid()}"):
            with folder_lock(tmp_path / "out"):
                pass
    with folder_lock(tmp_path / "out"):
        pass  # released when the first block ended


def test_folder_lock_of_another_process_ends_with_it(tmp_path):
    code = "import sys, time; from qfcn.io import folder_lock\nwith folder_lock(sys.argv[1]):\n print('ok', flush=True); time.sleep(60)"
    proc = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.stdout.readline().strip() == "ok"
    with pytest.raises(FolderLocked, match=f"pid {proc.pid}"):
        with folder_lock(tmp_path):
            pass
    proc.kill()  # kill -9: the kernel drops the lock
    proc.wait()
    with folder_lock(tmp_path):
        pass
