"""Dask without silent hangs (issue 13, group 6): a malformed address, an unreachable scheduler and
a cluster that loses its only worker each end with one clear line within ``timeout`` seconds.
On loopback, with small timeouts."""
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from qfcn.study import cluster, runner


@pytest.mark.parametrize("address", ["tcp//127.0.0.1:8786", "127.0.0.1:8786", "tcp://127.0.0.1:99999",
                                     "tcp://127.0.0.1:port", "", "tcp://host name:1"])
def test_malformed_address_is_refused_before_connecting(address):
    with pytest.raises(cluster.ClusterError, match="not a Dask scheduler address; expected PROTOCOL://HOST:PORT"):
        cluster.check_address(address)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_scheduler_ends_within_the_timeout(tmp_path):
    t0 = time.monotonic()
    with pytest.raises(runner.StudyError, match=r"no Dask scheduler answered within 2 s \(--timeout\)"):
        runner._executor(1, f"tcp://127.0.0.1:{_free_port()}", 2.0)
    assert time.monotonic() - t0 < 20


def _die(seconds: float) -> int:
    time.sleep(seconds)
    os.kill(os.getpid(), signal.SIGKILL)  # the process running the task dies
    return 0


def test_lost_only_worker_ends_the_batch_with_a_clear_message():
    """A scheduler with one worker WITHOUT a nanny (nobody restarts it), like a remote machine."""
    from dask.distributed import LocalCluster

    with LocalCluster(n_workers=0, processes=False, protocol="tcp", host="127.0.0.1", dashboard_address=None) as lc:
        worker = subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker", lc.scheduler_address,
                                   "--no-nanny", "--nthreads", "1", "--no-dashboard"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = cluster.connect(lc.scheduler_address, 10)
        try:
            client.wait_for_workers(1, timeout=60)
            futures = {client.get_executor().submit(_die, 0.2): 0}
            t0 = time.monotonic()
            with pytest.raises(cluster.ClusterError, match=r"has had no worker for 2 s \(--timeout\) with 1 run"):
                cluster.collect(futures, lambda i, v: None, lambda i, e: None, client=client,
                                address=lc.scheduler_address, timeout=2.0, poll=0.2)
            assert time.monotonic() - t0 < 30
        finally:
            client.close(timeout=5)
            worker.kill()
            worker.wait()


def test_a_run_whose_process_died_becomes_a_failed_run():
    import concurrent.futures as cf

    errors, results = {}, {}
    with cf.ProcessPoolExecutor(max_workers=1) as ex:
        cluster.collect({ex.submit(_die, 0.0): 0}, results.__setitem__, errors.__setitem__)
    assert not results and isinstance(errors[0], cf.process.BrokenProcessPool)
