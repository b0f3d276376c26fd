"""The notebook chain, run by papermill: the data step, batches of runs, the ablations.

* :func:`run_data_step` executes ``01-data`` once per study folder.
* :func:`run_point` executes ``02 -> 03 -> 04`` for one point of the batch in its own run
  folder ``OUT/runs/<name>-s<seed>-<hash>/``; the hash covers every parameter the chain gets,
  so a finished run (``done.json`` with the same hash) is skipped on rerun. A failed run keeps
  its executed notebooks and a ``failed.json``; it does not stop the others.
* :func:`run_sweep` runs all points on an executor: in this process (``workers=1``), a local
  process pool (``workers>1``) or an existing Dask cluster (``scheduler=ADDRESS``; Dask's
  ``Client.get_executor()`` has the interface of a process pool).
* :func:`run_study` = data step + batch + ``05-ablations`` + :mod:`qfcn.study.report`.

Every function that executes notebooks takes ``notebooks_dir``, the folder holding the chain
(default: the project's ``notebooks/``), so that the skip, failure and resume logic can be
tested with tiny fixture notebooks.

>>> run_id({"name": "sa float", "seed": 1}, {"ensemble": {"k_members": 3}})
('sa-float-s1-90798b18f4', '90798b18f4')
"""
from __future__ import annotations

import concurrent.futures as cf
import os
import time
import traceback
from pathlib import Path
from typing import Any

from tqdm import tqdm

from qfcn.io import ArtifactError, atomic_write_json, param_hash, run_done
from qfcn.study import params as P
from qfcn.study import report, runs

KERNEL = "python3"


class StudyError(RuntimeError):
    """A study or sweep could not start (bad params file, bad data folder)."""


def _execute(notebook: str, out_nb: Path, parameters: dict[str, Any], *, progress: bool,
             notebooks_dir: str | os.PathLike | None = None) -> None:
    """Execute ``<notebooks_dir>/<notebook>`` into ``out_nb`` (its folder is the kernel's working directory)."""
    import papermill  # heavy (about 4 s to import): only in the processes that execute notebooks

    out_nb.parent.mkdir(parents=True, exist_ok=True)
    # kernels inherit this: progress bars in executed notebooks update at most every 30 s
    # (every update is a separate output there), instead of ten times a second
    os.environ["TQDM_MININTERVAL"] = "30"
    papermill.execute_notebook(
        str(Path(notebooks_dir if notebooks_dir is not None else runs.NOTEBOOKS) / notebook), str(out_nb), parameters=parameters, kernel_name=KERNEL,
        cwd=str(out_nb.parent), progress_bar=False, log_output=False, report_mode=False)
    if progress:
        print(f"  done {out_nb}", flush=True)


def run_data_step(params: dict[str, Any], out: Path, data: Path | None, *, progress: bool = True,
                  notebooks_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """Execute ``01-data`` into ``out`` (skipped when its manifest exists with the same parameters)."""
    nb_params = P.notebook_parameters(params, "data", notebooks_dir=notebooks_dir)
    nb_params.update(study_dir=str(out), glas_dir=str(data) if data else "")
    effective = {**P.notebook_defaults(P.SECTIONS["data"], notebooks_dir), **nb_params}
    effective.pop("study_dir")
    h = param_hash(effective)  # the notebook stamps its manifest with the same hash
    try:
        manifest = runs.read_manifest(out)
        if manifest.get("params_hash") == h:
            return manifest
    except ArtifactError:
        pass
    if data is not None and not Path(data).is_dir():
        raise StudyError(f"--data {data}: not a folder (expected a folder in GlaS layout)")
    _execute(P.SECTIONS["data"], out / P.SECTIONS["data"], nb_params, progress=progress, notebooks_dir=notebooks_dir)
    return runs.read_manifest(out)


def run_id(point: dict[str, Any], chain_params: dict[str, dict[str, Any]]) -> tuple[str, str]:
    """(folder name, parameter hash) of a batch point."""
    h = param_hash(chain_params)
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "-" for ch in str(point.get("name", "run")))
    return f"{safe}-s{point.get('seed', 0)}-{h}", h


def point_parameters(params: dict[str, Any], point: dict[str, Any],
                     notebooks_dir: str | os.PathLike | None = None) -> dict[str, dict[str, Any]]:
    """Per-notebook parameters of one batch point (without the runner's folders)."""
    return {sec: P.notebook_parameters(params, sec, point, notebooks_dir) for sec in P.CHAIN}


def run_point(params: dict[str, Any], point: dict[str, Any], out: str, progress: bool = False,
              threads: int | None = None, notebooks_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """Execute 02 -> 03 -> 04 for one point. Returns a status dict; never raises for a failed run.

    ``threads``: CPU threads of the notebook kernels (``OMP_NUM_THREADS``, read by torch at start);
    None keeps the environment's setting."""
    out = Path(out)
    if threads is not None:
        os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(threads)
    chain = point_parameters(params, point, notebooks_dir)
    name, h = run_id(point, chain)
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
        atomic_write_json(run_dir / "failed.json", {"error": str(exc)[-4000:], "traceback": traceback.format_exc()[-4000:], **status})
        return {**status, "status": "failed", "error": str(exc).strip().splitlines()[-1] if str(exc).strip() else repr(exc)}
    atomic_write_json(run_dir / "done.json", {**status, "point": point, "seconds": time.time() - t0,
                                                   "threads": os.environ.get("OMP_NUM_THREADS")})
    return {**status, "status": "done", "seconds": round(time.time() - t0, 1)}


def check_points(params: dict[str, Any], points: list[dict[str, Any]], n_pool: int,
                 notebooks_dir: str | os.PathLike | None = None) -> None:
    """Check every point's chain parameters (with the notebooks' defaults) before any run starts."""
    defaults = {sec: P.notebook_defaults(P.SECTIONS[sec], notebooks_dir) for sec in P.CHAIN}
    for point in points:
        nb = {sec: {**defaults[sec], **v} for sec, v in point_parameters(params, point, notebooks_dir).items()}
        ens = nb["ensemble"]
        try:
            P.check_ensemble(**ens)
            P.check_suggestion(n_pool, **{**nb["suggestion"], "initial_fraction": ens["initial_fraction"],
                                               "k_members": ens["k_members"]})
            P.check_training(**nb["training"])
        except ValueError as exc:
            raise StudyError(f"run {point.get('name')!r} (seed {point.get('seed')}): {exc}") from exc


def _executor(workers: int, scheduler: str | None):
    if scheduler:
        try:
            from dask.distributed import Client  # optional and heavy: only for --scheduler
        except ImportError as exc:  # pragma: no cover - dask is a dependency
            raise StudyError("--scheduler needs dask.distributed") from exc
        client = Client(scheduler)
        return client.get_executor(), client
    if workers > 1:
        return cf.ProcessPoolExecutor(max_workers=workers), None
    return None, None


def run_batch(params: dict[str, Any], out: Path, *, workers: int = 1, scheduler: str | None = None,
              progress: bool = True, notebooks_dir: str | os.PathLike | None = None) -> list[dict[str, Any]]:
    """Run every batch point; returns one status dict per point (in point order).

    With ``workers`` > 1 on this machine, each run's kernels get ``cpu_count // workers`` threads
    (on 2 cores, two 1-thread workers train the CPU-sized network about 1.4x faster in total than
    one 2-thread worker: ``benchmarks/bench_threads.py``)."""
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise StudyError(f"--workers {workers!r}: expected a positive integer")
    threads = max(1, (os.cpu_count() or 1) // workers) if workers > 1 and not scheduler else None
    points = P.batch_points(params)
    check_points(params, points, runs.read_manifest(out)["counts"]["train"]["images"], notebooks_dir)
    results: list[dict[str, Any] | None] = [None] * len(points)
    bar = tqdm(total=len(points), desc="runs", disable=not progress)
    executor, client = _executor(workers, scheduler)
    try:
        if executor is None:
            for i, point in enumerate(points):
                bar.set_postfix_str(f"{point['name']} seed {point['seed']}")
                results[i] = run_point(params, point, str(out), threads=threads, notebooks_dir=notebooks_dir)
                bar.update()
        else:
            futures = {executor.submit(run_point, params, point, str(out), False, threads, notebooks_dir): i
                       for i, point in enumerate(points)}
            for fut in cf.as_completed(futures):
                results[futures[fut]] = fut.result()
                bar.update()
    finally:
        bar.close()
        if client is not None:
            client.close()
        elif executor is not None:
            executor.shutdown(cancel_futures=True)
    return [r for r in results if r is not None]


def _load(params_path: Path, notebooks_dir: str | os.PathLike | None) -> dict[str, Any]:
    try:
        return P.load(params_path, notebooks_dir)
    except P.ParamsError as exc:
        raise StudyError(str(exc)) from exc


def _print_table(statuses: list[dict[str, Any]], out: Path) -> None:
    table = report.summary_table(out)
    failed = [s for s in statuses if s["status"] == "failed"]
    print(table.to_string(index=False) if len(table) else "(no finished runs)")
    for s in failed:
        print(f"FAILED {s['run_dir']}: {s.get('error')} (see its executed notebooks)")


def _data_and_batch(params_path: Path, out: Path, data: Path | None, workers: int, scheduler: str | None,
                    progress: bool, notebooks_dir: str | os.PathLike | None
                    ) -> tuple[dict[str, Any], Path, list[dict[str, Any]]]:
    params = _load(params_path, notebooks_dir)
    out = Path(out).resolve()
    run_data_step(params, out, data, progress=progress, notebooks_dir=notebooks_dir)
    return params, out, run_batch(params, out, workers=workers, scheduler=scheduler, progress=progress,
                                  notebooks_dir=notebooks_dir)


def run_sweep(params_path: Path, out: Path, data: Path | None = None, workers: int = 1,
              scheduler: str | None = None, progress: bool = True,
              notebooks_dir: str | os.PathLike | None = None) -> list[dict[str, Any]]:
    """The ``sweep`` command: data step (if needed), then every batch point; a summary table."""
    _, out, statuses = _data_and_batch(params_path, out, data, workers, scheduler, progress, notebooks_dir)
    _print_table(statuses, out)
    return statuses


def run_study(params_path: Path, out: Path, data: Path | None = None, workers: int = 1,
              scheduler: str | None = None, progress: bool = True,
              notebooks_dir: str | os.PathLike | None = None) -> list[dict[str, Any]]:
    """The ``study`` command: sweep + ``05-ablations`` + rendered report (index.html, summary.json)."""
    params, out, statuses = _data_and_batch(params_path, out, data, workers, scheduler, progress, notebooks_dir)
    nb = P.SECTIONS["ablations"]
    _execute(nb, out / nb, {**P.notebook_parameters(params, "ablations", notebooks_dir=notebooks_dir),
                            "study_dir": str(out)}, progress=progress, notebooks_dir=notebooks_dir)
    report.write_report(out)
    _print_table(statuses, out)
    return statuses
