"""Executors for a batch of runs, with bounded waits: a local process pool or a Dask cluster.

Every wait on a cluster is bounded by ``timeout`` seconds (the CLI's ``--timeout``):

* a malformed scheduler address is refused before connecting (:func:`check_address`);
* an unreachable scheduler ends :func:`connect` after ``timeout`` seconds;
* while runs are pending, :func:`collect` asks the scheduler every ``poll`` seconds how many
  workers it has; none for ``timeout`` seconds (the only worker died) or a lost scheduler ends
  the batch with :class:`ClusterError` instead of waiting forever;
* a run whose worker died (Dask's ``KilledWorker``, a broken process pool) becomes a failed run
  with that cause; the other runs go on.

>>> check_address("tcp://127.0.0.1:8786")
'tcp://127.0.0.1:8786'
>>> check_address("tcp//127.0.0.1:8786")
Traceback (most recent call last):
    ...
qfcn.study.cluster.ClusterError: --scheduler 'tcp//127.0.0.1:8786': not a Dask scheduler address; expected PROTOCOL://HOST:PORT, e.g. tcp://127.0.0.1:8786
"""
from __future__ import annotations

import concurrent.futures as cf
import re
import time
from collections.abc import Callable
from typing import Any

_ADDRESS = re.compile(r"^(tcp|tls|ws|wss|ucx)://(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9_.-]+):(\d{1,5})$")


class ClusterError(RuntimeError):
    """The Dask scheduler is unreachable, its address malformed, or it has lost every worker."""


def check_address(address: str) -> str:
    """``address`` when it looks like a Dask scheduler address (PROTOCOL://HOST:PORT, port <= 65535)."""
    m = _ADDRESS.match(address or "")
    if m is None or not 0 < int(m.group(3)) <= 65535:
        raise ClusterError(f"--scheduler {address!r}: not a Dask scheduler address; expected PROTOCOL://HOST:PORT, "
                           "e.g. tcp://127.0.0.1:8786")
    return address


def connect(address: str, timeout: float):
    """A ``dask.distributed.Client`` of the scheduler at ``address``; :class:`ClusterError` when it
    does not answer within ``timeout`` seconds."""
    from dask.distributed import Client  # heavy: only for --scheduler

    check_address(address)
    try:
        return Client(address, timeout=timeout, set_as_default=False)
    except (OSError, TimeoutError, ValueError) as exc:
        raise ClusterError(f"--scheduler {address}: no Dask scheduler answered within {timeout:g} s (--timeout); "
                           f"is it running and reachable? ({type(exc).__name__})") from None


def _workers(client, address: str, timeout: float) -> int:
    try:
        return len(client.nthreads())
    except Exception as exc:  # a closed comm, a timeout: the scheduler is gone
        raise ClusterError(f"--scheduler {address}: lost the connection to the Dask scheduler "
                           f"({type(exc).__name__}); finished runs are kept, rerun to resume") from None


def collect(futures: dict[cf.Future, int], on_result: Callable[[int, Any], None], on_error: Callable[[int, BaseException], None],
            *, client=None, address: str = "", timeout: float = 60.0, poll: float = 1.0) -> None:
    """Wait for every future; call ``on_result(index, value)`` or ``on_error(index, exception)``.

    With a Dask ``client``: :class:`ClusterError` when the cluster has had no worker for
    ``timeout`` seconds or the scheduler is lost (the pending runs are left unfinished)."""
    pending = set(futures)
    no_worker_since: float | None = None
    while pending:
        done, pending = cf.wait(pending, timeout=poll, return_when=cf.FIRST_COMPLETED)
        for fut in done:
            try:
                on_result(futures[fut], fut.result())
            except Exception as exc:  # the run's process died (KilledWorker, BrokenProcessPool)
                on_error(futures[fut], exc)
        if client is None or not pending:
            continue
        if _workers(client, address, timeout):
            no_worker_since = None
        else:
            no_worker_since = no_worker_since or time.monotonic()
            if time.monotonic() - no_worker_since > timeout:
                raise ClusterError(f"--scheduler {address}: the Dask cluster has had no worker for {timeout:g} s "
                                   f"(--timeout) with {len(pending)} run(s) unfinished; their worker died? "
                                   "Finished runs are kept, rerun to resume")
