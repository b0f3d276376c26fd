"""The notebook chain, run by papermill: the data step, batches of runs, the ablations.

* :func:`run_data_step` executes ``01-data`` once per study folder.
* :func:`run_point` executes ``02 -> 03 -> 04`` for one point of the batch in its own run
  folder ``OUT/runs/<name>-s<seed>-<hash>/``. The hash is the run's identity: every parameter
  the chain gets, the data manifest hash, the code hash (:func:`qfcn.study.folder.code_hash`)
  and the CPU threads per run (results depend on it). A finished run (``done.json`` with the
  same hash) is skipped on rerun. A failed run keeps its executed notebooks and a
  ``failed.json``; it does not stop the others.
* :func:`run_batch` runs all points on an executor: in this process (``workers=1``), a local
  process pool (``workers>1``) or an existing Dask cluster (``scheduler=ADDRESS``), with bounded
  waits (:mod:`qfcn.study.cluster`); it writes ``OUT/failed.json``.
* The commands built on these (every check first, a folder lock, the study record, the
  ablations and the report) are in :mod:`qfcn.study.commands` (docs/method.md §7).

Every function that executes notebooks takes ``notebooks_dir``, the folder holding the chain
(default: the project's ``notebooks/``), so that the skip, failure and resume logic can be
tested with tiny fixture notebooks.

>>> run_id({"name": "sa float", "seed": 1}, {"ensemble": {"k_members": 3}}, {"threads": 1})
('sa-float-s1-0bc2db144b', '0bc2db144b')
"""
from __future__ import annotations

import concurrent.futures as cf
import contextlib
import os
import tempfile
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tqdm import tqdm
from traitlets.config import Config

from qfcn.io import ArtifactError, atomic_write_json, param_hash, run_done
from qfcn.study import cluster, folder, runs
from qfcn.study import params as P

KERNEL = "python3"
#: the executed kernels' log level (see :func:`kernel_config`)
KERNEL_LOG = "--IPKernelApp.log_level=CRITICAL"
DONE = ("done", "skipped (done)")


class StudyError(RuntimeError):
    """A study or sweep could not start or go on (a bad params file, data folder, --out, cluster)."""


def one_line(exc: BaseException) -> str:
    """One line for an exception: a notebook's ``Error: message``, else the message's last line."""
    if hasattr(exc, "ename") and hasattr(exc, "evalue"):  # papermill's PapermillExecutionError
        text = f"{exc.ename}: {exc.evalue}"
    else:
        lines = [ln for ln in str(exc).strip().splitlines() if ln.strip()]
        text = lines[-1] if lines else type(exc).__name__
    return " ".join(text.split())


@contextlib.contextmanager
def kernel_config() -> Iterator[Config]:
    """The kernel manager's settings for one notebook execution: ZeroMQ over local ``ipc`` sockets
    in a private temporary folder (removed afterwards) instead of TCP ports on localhost.

    Why: papermill (nbclient, jupyter_client) starts ipykernel with the ``tcp`` transport by
    default, and ipykernel >= 7 then warns "Kernel is running over TCP without encryption" on every
    start. IPC sockets are files only this user can reach, so there is nothing to encrypt and no
    warning. The socket prefix is an ABSOLUTE path (the default ``kernel-ipc`` is relative to
    the kernel's working directory, the run folder). Windows has no ipc transport: tcp as before.

    The kernel's own log is set to CRITICAL: jupyter_client interrupts (SIGINT) every kernel
    before asking it to shut down, and a kernel caught handling a message then logs "KeyboardInterrupt
    caught in kernel." to the terminal, at random, after a notebook that ran to its end. A cell's
    error is unaffected: it is in the executed notebook and fails the execution.

    >>> with kernel_config() as cfg:
    ...     cfg.KernelManager.transport == ("tcp" if os.name == "nt" else "ipc")
    True
    >>> "--IPKernelApp.log_level=CRITICAL" in cfg.NotebookClient.extra_arguments
    True
    """
    quiet = {"NotebookClient": {"extra_arguments": [KERNEL_LOG]}}
    if os.name == "nt":
        yield Config(quiet)
        return
    with tempfile.TemporaryDirectory(prefix="qfcn-kernel-") as tmp:
        yield Config({"KernelManager": {"transport": "ipc", "ip": os.path.join(tmp, "kernel")}, **quiet})


def _execute(notebook: str, out_nb: Path, parameters: dict[str, Any], *, progress: bool,
             notebooks_dir: str | os.PathLike | None = None, keep_previous: bool = False) -> None:
    """Execute ``<notebooks_dir>/<notebook>`` into ``out_nb`` (its folder is the kernel's working
    directory). A parameter the notebook does not declare is a :class:`StudyError` (papermill only
    warns). ``keep_previous``: execute into a temporary file and replace ``out_nb`` only on
    success; a failed execution is kept as ``<stem>.failed.ipynb``."""
    import papermill  # heavy (about 4 s to import): only in the processes that execute notebooks

    source = Path(notebooks_dir if notebooks_dir is not None else runs.NOTEBOOKS) / notebook
    unknown = sorted(set(parameters) - set(P.notebook_defaults(notebook, notebooks_dir)))
    if unknown:
        raise StudyError(f"{source}: no parameter {unknown[0]!r} in its parameters cell")
    out_nb.parent.mkdir(parents=True, exist_ok=True)
    target = out_nb.with_name(f".{out_nb.stem}.running.ipynb") if keep_previous else out_nb
    # kernels inherit this: progress bars in executed notebooks update at most every 30 s
    os.environ["TQDM_MININTERVAL"] = "30"
    try:
        with kernel_config() as config:
            papermill.execute_notebook(str(source), str(target), parameters=parameters, kernel_name=KERNEL,
                                       cwd=str(out_nb.parent), progress_bar=False, log_output=False,
                                       report_mode=False, config=config)
    except BaseException:
        if keep_previous and target.exists():
            os.replace(target, out_nb.with_name(f"{out_nb.stem}.failed.ipynb"))
        raise
    if keep_previous:
        os.replace(target, out_nb)
    if progress:
        print(f"  done {out_nb}", flush=True)


def _data_parameters(params: dict[str, Any], out: Path, data: Path | None, options: dict[str, Any] | None,
                     notebooks_dir: str | os.PathLike | None) -> tuple[dict[str, Any], str]:
    """Parameters of ``01-data`` and their hash (the notebook stamps its manifest with it)."""
    defaults = P.notebook_defaults(P.SECTIONS["data"], notebooks_dir)
    nb_params = P.notebook_parameters(params, "data", notebooks_dir=notebooks_dir)
    for key, value in (options or {}).items():
        if key not in defaults:
            raise StudyError(f"--{key.replace('_', '-')}: notebook {P.SECTIONS['data']} has no {key!r} parameter "
                             "in this version of qfcn")
        nb_params[key] = value
    nb_params.update(study_dir=str(out), glas_dir=str(data) if data else "")
    effective = {k: v for k, v in {**defaults, **nb_params}.items() if k != "study_dir"}
    return nb_params, param_hash(effective)


def run_data_step(params: dict[str, Any], out: Path, data: Path | None, *, progress: bool = True,
                  notebooks_dir: str | os.PathLike | None = None, options: dict[str, Any] | None = None) -> dict[str, Any]:
    """Execute ``01-data`` into ``out`` (skipped when its manifest exists with the same parameters).
    ``options``: data-step parameters from the command line (``labels``)."""
    if data is not None and not Path(data).is_dir():
        raise StudyError(f"--data {data}: not a folder (expected a folder in GlaS layout)")
    nb_params, h = _data_parameters(params, out, data, options, notebooks_dir)
    try:
        manifest = runs.read_manifest(out)
        if manifest.get("params_hash") == h:
            return manifest
    except ArtifactError:
        pass
    nb = P.SECTIONS["data"]
    try:
        _execute(nb, out / nb, nb_params, progress=progress, notebooks_dir=notebooks_dir, keep_previous=True)
    except Exception as exc:
        if isinstance(exc, StudyError):
            raise
        hint = " (from the command line: --replace)" if "overwrite=True" in str(exc) else ""
        raise StudyError(f"the data step failed: {one_line(exc)}{hint} "
                         f"(executed notebook: {out / Path(nb).stem}.failed.ipynb)") from exc
    return runs.read_manifest(out)


def run_identity(out: Path, threads: int | None, notebooks_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """What besides its parameters decides a run's numbers: the study's data manifest hash, the
    code hash and the CPU threads per run (None: ``OMP_NUM_THREADS`` or the CPU count)."""
    if threads is None:
        env = os.environ.get("OMP_NUM_THREADS", "")
        threads = int(env) if env.isdigit() else (os.cpu_count() or 1)
    nbs = Path(notebooks_dir if notebooks_dir is not None else runs.NOTEBOOKS)
    return {"manifest_hash": runs.read_manifest(out)["hash"], "threads": threads,
            "code": folder.code_hash([nbs / P.SECTIONS[s] for s in P.CHAIN])}


def run_id(point: dict[str, Any], chain_params: dict[str, dict[str, Any]], identity: dict[str, Any]) -> tuple[str, str]:
    """(folder name, identity hash) of a batch point: its chain parameters and ``identity``."""
    h = param_hash({"params": chain_params, **identity})
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "-" for ch in str(point.get("name", "run")))
    return f"{safe}-s{point.get('seed', 0)}-{h}", h


def point_parameters(params: dict[str, Any], point: dict[str, Any],
                     notebooks_dir: str | os.PathLike | None = None) -> dict[str, dict[str, Any]]:
    """Per-notebook parameters of one batch point (without the runner's folders)."""
    return {sec: P.notebook_parameters(params, sec, point, notebooks_dir) for sec in P.CHAIN}


def expected_runs(params: dict[str, Any], points: list[dict[str, Any]], identity: dict[str, Any],
                  notebooks_dir: str | os.PathLike | None = None) -> dict[str, dict[str, Any]]:
    """Run folder name -> recorded identity (name, seed, params hash, manifest, code, threads) of every point."""
    out = {}
    for point in points:
        chain = point_parameters(params, point, notebooks_dir)
        name, _ = run_id(point, chain, identity)
        out[name] = {"name": point["name"], "seed": point["seed"], "params": param_hash(chain), **identity}
    return out


def run_point(params: dict[str, Any], point: dict[str, Any], out: str, progress: bool = False,
              threads: int | None = None, notebooks_dir: str | os.PathLike | None = None,
              identity: dict[str, Any] | None = None) -> dict[str, Any]:
    """Execute 02 -> 03 -> 04 for one point. Returns a status dict; never raises for a failed run.

    ``threads``: CPU threads of the notebook kernels (``OMP_NUM_THREADS``, read by torch at start);
    None keeps the environment's setting. ``identity``: :func:`run_identity` (computed if None)."""
    out = Path(out)
    identity = identity or run_identity(out, threads, notebooks_dir)
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(identity["threads"])
    chain = point_parameters(params, point, notebooks_dir)
    name, h = run_id(point, chain, identity)
    run_dir = out / "runs" / name
    status = {"name": point.get("name"), "seed": point.get("seed"), "run_dir": str(run_dir), "params_hash": h}
    if run_done(run_dir, h):
        return {**status, "status": "skipped (done)"}
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "failed.json").unlink(missing_ok=True)
    t0 = time.time()
    try:
        for sec in P.CHAIN:
            nb = P.SECTIONS[sec]
            _execute(nb, run_dir / nb, {**chain[sec], "study_dir": str(out), "run_dir": str(run_dir)},
                     progress=progress, notebooks_dir=notebooks_dir)
    except Exception as exc:  # papermill raises PapermillExecutionError; keep going with other runs
        error = one_line(exc)
        atomic_write_json(run_dir / "failed.json", {"error": error, "message": str(exc)[-4000:],
                                                    "traceback": traceback.format_exc()[-4000:], **status})
        return {**status, "status": "failed", "error": error}
    ident = {"params": param_hash(chain), **identity, "name": point.get("name"), "seed": point.get("seed")}
    atomic_write_json(run_dir / "done.json", {**status, "point": point, "seconds": time.time() - t0,
                                              "threads": identity["threads"], "identity": ident})
    return {**status, "status": "done", "seconds": round(time.time() - t0, 1)}


def check_points(params: dict[str, Any], points: list[dict[str, Any]], n_pool: int | None,
                 notebooks_dir: str | os.PathLike | None = None) -> None:
    """Check every point's chain parameters (with the notebooks' defaults) before any run starts;
    the pool-size checks of the suggestion loop only when ``n_pool`` (training images) is known."""
    defaults = {sec: P.notebook_defaults(P.SECTIONS[sec], notebooks_dir) for sec in P.CHAIN}
    for point in points:
        nb = {sec: {**defaults[sec], **v} for sec, v in point_parameters(params, point, notebooks_dir).items()}
        ens, tr = nb["ensemble"], nb["training"]
        try:
            P.check_ensemble(**ens)
            P.check_network("ensemble", ens, ens["qsa_scheme"], ens["qsa_bits"])
            if n_pool is not None:
                P.check_suggestion(n_pool, **{**nb["suggestion"], "initial_fraction": ens["initial_fraction"],
                                              "k_members": ens["k_members"]})
            P.check_training(**tr)
            P.check_network("training", tr, tr["ntq_scheme"], tr["ntq_bits"])
        except ValueError as exc:
            raise StudyError(f"run {point.get('name')!r} (seed {point.get('seed')}): {exc}") from None


def resolve_threads(threads: int | None, workers: int, scheduler: str | None) -> int:
    """CPU threads per run: ``threads`` if given; else 1 on a Dask cluster, else ``cpu_count // workers``
    (on 2 cores two 1-thread runs train about 1.4x faster in total than one 2-thread run:
    ``benchmarks/bench_threads.py``). Part of every run's identity."""
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise StudyError(f"--workers {workers!r}: expected a positive integer")
    if threads is not None:
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise StudyError(f"--threads {threads!r}: expected a positive integer")
        return threads
    return 1 if scheduler else max(1, (os.cpu_count() or 1) // workers)


def _executor(workers: int, scheduler: str | None, timeout: float):
    if scheduler:
        try:
            client = cluster.connect(scheduler, timeout)
        except cluster.ClusterError as exc:
            raise StudyError(str(exc)) from None
        return client.get_executor(), client
    if workers > 1:
        return cf.ProcessPoolExecutor(max_workers=workers), None
    return None, None


def run_batch(params: dict[str, Any], out: Path, *, workers: int = 1, scheduler: str | None = None,
              progress: bool = True, notebooks_dir: str | os.PathLike | None = None, threads: int | None = None,
              timeout: float = 60.0) -> list[dict[str, Any]]:
    """Run every batch point; returns one status dict per point (in point order) and writes
    ``OUT/failed.json``. Finished runs of another identity under ``OUT/runs`` are refused
    (:func:`qfcn.study.folder.foreign_runs`): their results would be mixed with these."""
    out = Path(out)
    threads = resolve_threads(threads, workers, scheduler)
    points = P.batch_points(params)
    check_points(params, points, runs.read_manifest(out)["counts"]["train"]["images"], notebooks_dir)
    identity = run_identity(out, threads, notebooks_dir)
    foreign = folder.foreign_runs(out, expected_runs(params, points, identity, notebooks_dir))
    if foreign:
        raise StudyError(f"--out {out}: holds {len(foreign)} finished run(s) of another identity ({foreign[0]}); "
                         "pass --replace to move them aside, or choose another --out")
    results: list[dict[str, Any] | None] = [None] * len(points)
    bar = tqdm(total=len(points), desc="runs", disable=not progress)

    def failed(i: int, exc: BaseException) -> None:
        p = points[i]
        results[i] = {"name": p["name"], "seed": p["seed"], "status": "failed", "run_dir": str(out / "runs" / run_id(
            p, point_parameters(params, p, notebooks_dir), identity)[0]), "error": f"its worker died: {one_line(exc)}"}
        bar.update()

    def finished(i: int, status: dict[str, Any]) -> None:
        results[i] = status
        bar.update()

    executor, client = _executor(workers, scheduler, timeout)
    try:
        if executor is None:
            for i, point in enumerate(points):
                bar.set_postfix_str(f"{point['name']} seed {point['seed']}")
                finished(i, run_point(params, point, str(out), threads=threads, notebooks_dir=notebooks_dir,
                                      identity=identity))
        else:
            futures = {executor.submit(run_point, params, point, str(out), False, threads, notebooks_dir, identity): i
                       for i, point in enumerate(points)}
            cluster.collect(futures, finished, failed, client=client, address=scheduler or "", timeout=timeout)
    except cluster.ClusterError as exc:
        raise StudyError(str(exc)) from None
    finally:
        bar.close()
        if client is not None:
            client.close(timeout=timeout)
        elif executor is not None:
            executor.shutdown(cancel_futures=True)
    statuses = [r for r in results if r is not None]
    runs.write_failed(out, [s for s in statuses if s["status"] == "failed"], n_runs=len(statuses))
    return statuses
