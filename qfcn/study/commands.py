"""The ``study`` and ``sweep`` commands: every check first, then the chain under a folder lock.

Order, so that a mistake is named before a single file is written (a run's identity includes
its thread count: docs/method.md §7, "Floating point"):

1. the params file (schema and values of the whole chain: :mod:`qfcn.study.params`), ``--data``
   (a folder), ``--scheduler`` (an address), ``--threads`` / ``--workers``;
2. ``--out`` (:func:`qfcn.study.folder.check_out`: absent, empty, or a study folder made by qfcn);
3. holding ``OUT/.lock`` (a second command on the same folder is refused at once): the study's
   identity against ``OUT/study.json`` and its finished runs; a difference is refused unless
   ``replace``, which MOVES the old contents into ``OUT/replaced-<time>/``;
4. ``study.json``, the data step, the batch (``OUT/failed.json``), and for ``study`` the
   ablations notebook, the reproduction check and the report.

The reproduction check (:mod:`qfcn.study.reproduce`): ``study`` with a project profile whose study
is committed (``params/fast.yaml`` -> ``reports/fast``) compares its runs and verdicts with that
study (or with ``reference``; none with ``compare=False``), writes ``OUT/reproduction.json`` and
prints one line. The reference is checked in step 1; ``--out`` the committed folder itself is a
re-render of it (a note says so, nothing is compared).

Paths are resolved once, against the working directory, and recorded absolute.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from qfcn.io import ArtifactError, FolderLocked, folder_lock, param_hash
from qfcn.study import cluster, folder, report, reproduce, runs
from qfcn.study import params as P
from qfcn.study.runner import (DONE, StudyError, _data_parameters, _execute, check_points, expected_runs,
                               one_line, resolve_threads, run_batch, run_data_step, run_identity)

HINT = "pass --replace to move them into {out}/replaced-<time>/ (nothing is deleted), or choose another --out"


class RunsFailed(StudyError):
    """Some runs of a batch failed (the others finished); exit status 1."""


def _abs(path: str | os.PathLike | None) -> Path | None:
    return None if path is None or str(path) == "" else Path(path).expanduser().resolve()


def _reason(out: Path, state: str, identity: dict[str, Any], params: dict[str, Any], threads: int,
            data_hash: str, notebooks_dir: str | os.PathLike | None) -> str | None:
    """Why ``out`` may not take this call's results (None: it may)."""
    if state == "legacy":
        return f"holds a study made by an older qfcn (no {folder.STUDY_FILE})"
    if state != "study":
        return None
    change = folder.identity_change(out, identity)
    if change:
        return f"holds results of another study: {change}"
    try:
        manifest = runs.read_manifest(out)
    except ArtifactError:
        return None
    if manifest.get("params_hash") != data_hash:
        return None  # no data yet (identity_change covers a changed data step)
    ident = run_identity(out, threads, notebooks_dir)
    foreign = folder.foreign_runs(out, expected_runs(params, P.batch_points(params), ident, notebooks_dir))
    if foreign:
        return f"holds {len(foreign)} finished run(s) of another identity ({foreign[0]})"
    return None


def _prepare(params_path: Path, out: Path, data: Path | None, *, workers: int, scheduler: str | None,
             threads: int | None, notebooks_dir: str | os.PathLike | None) -> tuple[dict[str, Any], int]:
    """Steps 1-2 above (reads only); returns (params, threads per run)."""
    try:
        params = P.load(params_path, notebooks_dir)
    except P.ParamsError as exc:
        raise StudyError(str(exc)) from None
    if data is not None and not data.is_dir():
        raise StudyError(f"--data {data}: not a folder (expected a folder in GlaS layout)")
    try:
        if scheduler:
            cluster.check_address(scheduler)
        folder.check_out(out)
    except (cluster.ClusterError, folder.FolderError) as exc:
        raise StudyError(str(exc)) from None
    return params, resolve_threads(threads, workers, scheduler)


def check(params_path: str | os.PathLike, out: str | os.PathLike, data: str | os.PathLike | None = None, *,
          workers: int = 1, scheduler: str | None = None, threads: int | None = None, options: dict[str, Any] | None = None,
          notebooks_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """Every check that needs no lock (steps 1-2 above); reads only. Returns the resolved call:
    ``params``, ``threads``, ``out``, ``data``, ``params_path`` (absolute) and the study ``identity``
    (params hash, data source, data-step hash). Raises :class:`StudyError` with one line."""
    params_path, out, data = _abs(params_path), _abs(out), _abs(data)
    params, threads = _prepare(params_path, out, data, workers=workers, scheduler=scheduler, threads=threads,
                               notebooks_dir=notebooks_dir)
    try:
        check_points(params, P.batch_points(params), None, notebooks_dir)
    except StudyError as exc:
        raise StudyError(f"{params_path}: {exc}") from None
    _, data_hash = _data_parameters(params, out, data, options or {}, notebooks_dir)
    identity = {"params": param_hash(params), "data": str(data) if data else "synthetic", "data_step": data_hash}
    return dict(params=params, threads=threads, out=out, data=data, params_path=params_path, identity=identity)


def _session(params_path, out, data, *, workers, scheduler, threads, replace, options, progress, notebooks_dir,
             timeout, then) -> list[dict[str, Any]]:
    call = check(params_path, out, data, workers=workers, scheduler=scheduler, threads=threads, options=options,
                 notebooks_dir=notebooks_dir)
    params, threads, out, data, identity = (call[k] for k in ("params", "threads", "out", "data", "identity"))
    params_path, data_hash = call["params_path"], identity["data_step"]
    try:
        with folder_lock(out, folder.LOCK_FILE):
            try:
                state = folder.check_out(out)
            except folder.FolderError as exc:
                raise StudyError(str(exc)) from None
            reason = _reason(out, state, identity, params, threads, data_hash, notebooks_dir)
            if reason and not replace:
                raise StudyError(f"--out {out}: {reason}; " + HINT.format(out=out))
            if reason:
                moved = folder.replace(out)
                print(f"moved the previous contents of {out} to {moved}", flush=True)
            folder.write_study(out, params_path, identity, threads=threads, data_source=str(data or "synthetic"))
            run_data_step(params, out, data, progress=progress, notebooks_dir=notebooks_dir, options=options)
            statuses = run_batch(params, out, workers=workers, scheduler=scheduler, progress=progress,
                                 notebooks_dir=notebooks_dir, threads=threads, timeout=timeout)
            then(params, out, statuses)
    except FolderLocked as exc:
        raise StudyError(f"--out {out}: another qfcn command is writing this folder ({exc}); "
                         "wait for it to finish or choose another --out") from None
    return statuses


def _print_table(statuses: list[dict[str, Any]], out: Path) -> None:
    table = report.summary_table(out) if any(s["status"] in DONE for s in statuses) else []
    print(table.to_string(index=False) if len(table) else "(no finished runs)")
    for s in statuses:
        if s["status"] == "failed":
            print(f"FAILED {s['run_dir']}: {s.get('error')} (see its executed notebooks)")


def _raise_failed(statuses: list[dict[str, Any]], out: Path) -> None:
    failed = [s for s in statuses if s["status"] == "failed"]
    if failed:
        raise RunsFailed(f"{len(failed)} of {len(statuses)} runs failed, e.g. {failed[0]['name']!r} "
                         f"(seed {failed[0]['seed']}): {failed[0]['error']} (all causes: {out / runs.FAILED_FILE})")


def run_sweep(params_path: Path, out: Path, data: Path | None = None, workers: int = 1, scheduler: str | None = None,
              progress: bool = True, notebooks_dir: str | os.PathLike | None = None, *, threads: int | None = None,
              replace: bool = False, timeout: float = 60.0, labels: str | None = None) -> list[dict[str, Any]]:
    """The ``sweep`` command: data step (if needed), then every batch point; a summary table.
    Returns the statuses; :class:`RunsFailed` (after the table) when any run failed."""
    def then(params, out, statuses):
        _print_table(statuses, out)

    return _command(params_path, out, data, workers=workers, scheduler=scheduler, threads=threads, replace=replace,
                    labels=labels, progress=progress, notebooks_dir=notebooks_dir, timeout=timeout, then=then)


def reference_for(params_path: str | os.PathLike, out: str | os.PathLike, reference: str | os.PathLike | None = None,
                  compare: bool = True) -> Path | None:
    """The study folder ``study`` compares with (None: no check); reads only. ``reference`` given:
    that folder (or its ``summary.json``), checked now; else the committed study of the profile
    (:func:`qfcn.study.reproduce.default_reference`). Raises :class:`StudyError` with one line."""
    out = _abs(out)
    if not compare:
        return None
    try:
        if reference is not None:
            ref, _ = reproduce.load_reference(reference)
            if ref == out:
                raise StudyError(f"--reference {reference}: that is --out itself; nothing to compare with "
                                 "(choose another study folder, or --no-reference)")
            return ref
        committed = reproduce.committed_study(_abs(params_path))
        if committed is not None and committed == out:
            print(f"note: --out {reproduce.label(out)} is the committed study of {Path(params_path).name}: this "
                  f"re-renders it (committed files change) and compares nothing; to reproduce it, use "
                  f"--out runs/{committed.name}", flush=True)
            return None
        if committed is not None:
            reproduce.load_reference(committed)
        return committed
    except reproduce.ReproductionError as exc:
        raise StudyError(str(exc)) from None


def _reproduction(out: Path, reference: Path | None) -> str | None:
    """Write ``OUT/reproduction.json`` against ``reference`` and return the terminal line; without a
    reference, remove a previous check (it would describe other results) and return None."""
    if reference is None:
        (out / reproduce.FILE).unlink(missing_ok=True)
        return None
    _, ref = reproduce.load_reference(reference)
    rep = reproduce.compare(report.summary(out), ref, reproduce.label(reference))
    reproduce.write(out, rep)
    return reproduce.line(rep)


def run_study(params_path: Path, out: Path, data: Path | None = None, workers: int = 1, scheduler: str | None = None,
              progress: bool = True, notebooks_dir: str | os.PathLike | None = None, *, threads: int | None = None,
              replace: bool = False, timeout: float = 60.0, labels: str | None = None,
              reference: str | os.PathLike | None = None, compare: bool = True) -> list[dict[str, Any]]:
    """The ``study`` command: sweep + ``05-ablations`` + reproduction check (:func:`reference_for`)
    + rendered report (index.html, summary.json). The ablations, check and report are skipped when
    no run finished; :class:`RunsFailed` when any failed."""
    ref = reference_for(params_path, out, reference, compare)

    def then(params, out, statuses):
        if any(s["status"] in DONE for s in statuses):
            nb = P.SECTIONS["ablations"]
            try:
                _execute(nb, out / nb, {**P.notebook_parameters(params, "ablations", notebooks_dir=notebooks_dir),
                                        "study_dir": str(out)}, progress=progress, notebooks_dir=notebooks_dir,
                         keep_previous=True)
            except StudyError:
                raise
            except Exception as exc:
                raise StudyError(f"notebook {nb} failed: {one_line(exc)} "
                                 f"(executed notebook: {out / Path(nb).stem}.failed.ipynb)") from exc
            check = _reproduction(out, ref)
            report.write_report(out)
            _print_table(statuses, out)
            if check:
                print(check, flush=True)
        else:
            _print_table(statuses, out)

    return _command(params_path, out, data, workers=workers, scheduler=scheduler, threads=threads, replace=replace,
                    labels=labels, progress=progress, notebooks_dir=notebooks_dir, timeout=timeout, then=then)


def _command(params_path, out, data, *, labels: str | None, then, **session: Any) -> list[dict[str, Any]]:
    """One command's session (:func:`_session` with ``then`` at its end), then
    :class:`RunsFailed` when any run failed; returns the statuses."""
    statuses = _session(params_path, out, data, options={"labels": labels} if labels else {}, then=then, **session)
    _raise_failed(statuses, _abs(out))
    return statuses
