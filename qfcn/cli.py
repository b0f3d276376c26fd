"""The command line: thin argument parsing that calls :mod:`qfcn.study.commands`.

Commands::

    python -m qfcn study --params params/fast.yaml --out runs/fast [--data GLAS_FOLDER] [--reference DIR | --no-reference]
    python -m qfcn sweep --params FILE --out DIR [--workers N] [--scheduler ADDRESS]
    python -m qfcn test [PYTEST ARGS ...]

A mistake (a params file, ``--data``, ``--out``, the cluster) ends in one line
``qfcn <command>: error: ...`` and exit status 2 before any work; ``--debug`` shows the
traceback instead. ``study`` with a project profile ends with one line comparing it with the
committed study of that profile (``reports/<profile>``: :mod:`qfcn.study.reproduce`). A batch in
which some runs failed finishes the others, lists the failures (also in ``OUT/failed.json``) and
exits with status 1.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from qfcn.io import ROOT, ArtifactError
from qfcn.study import commands
from qfcn.study.params import LABELS, ParamsError

USER_ERRORS = (commands.StudyError, ParamsError, ArtifactError, OSError)


def _positive(kind):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            value = 0
        if not value > 0:
            raise argparse.ArgumentTypeError(f"expected a positive {kind.__name__}, got {text!r}")
        return value
    return parse


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m qfcn", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)

    def common(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--params", required=True, type=Path, help="a params YAML file (params/*.yaml)")
        sp.add_argument("--out", required=True, type=Path,
                        help="the study folder: new, empty, or made by qfcn for the same params and data")
        sp.add_argument("--data", type=Path, default=None,
                        help="a folder in GlaS layout (relative to the working directory); default: the built-in synthetic GlaS")
        sp.add_argument("--labels", choices=LABELS, default=None,
                        help="annotations: 'instances' (GlaS: one label per gland) or 'components' (binary "
                             "masks, split into connected components: touching glands merge)")
        sp.add_argument("--workers", type=_positive(int), default=1, help="runs executed at once (default 1)")
        sp.add_argument("--threads", type=_positive(int), default=None,
                        help="CPU threads per run (default: CPU count // workers; 1 on Dask); results depend on it, "
                             "so it is part of every run's identity")
        sp.add_argument("--scheduler", default=None,
                        help="address of an existing Dask scheduler (tcp://host:port) to run on")
        sp.add_argument("--timeout", type=_positive(float), default=60.0,
                        help="seconds to wait for a Dask scheduler to answer, or for a cluster without workers "
                             "to get one back (default 60)")
        sp.add_argument("--replace", action="store_true",
                        help="--out holds results of another params file, data or code: move them into "
                             "OUT/replaced-<time>/ (nothing is deleted) and start afresh")
        sp.add_argument("--no-progress", action="store_true", help="hide progress bars")
        sp.add_argument("--debug", action="store_true", help="show tracebacks instead of one-line errors")

    study = sub.add_parser("study", help="the whole study: data, batch of runs, ablations, report, reproduction check")
    common(study)
    ref = study.add_mutually_exclusive_group()
    ref.add_argument("--reference", type=Path, default=None,
                     help="a study folder to compare with (default: reports/<profile> when --params is a project "
                          "profile with a committed study); writes OUT/reproduction.json and prints one line")
    ref.add_argument("--no-reference", action="store_true", help="no reproduction check")
    common(sub.add_parser("sweep", help="the notebook chain for every point of the params file's grid"))
    # listed for --help only: main() hands everything after "test" to pytest before parsing
    sub.add_parser("test", help="run the test suite (arguments are passed to pytest)")
    return p


def _error(command: str, text: str) -> None:
    print(f"qfcn {command}: error: {' '.join(str(text).split())}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 ok, 1 failed runs or an internal error,
    2 a user error, 130 interrupted)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["test"]:  # everything after "test" is pytest's, leading options too (argparse would refuse them)
        return subprocess.call([sys.executable, "-m", "pytest", *argv[1:]], cwd=ROOT)
    args = _parser().parse_args(argv)
    run = commands.run_study if args.command == "study" else commands.run_sweep
    extra = dict(reference=args.reference, compare=not args.no_reference) if args.command == "study" else {}
    try:
        run(args.params, args.out, args.data, args.workers, args.scheduler, not args.no_progress,
            threads=args.threads, replace=args.replace, timeout=args.timeout, labels=args.labels, **extra)
    except KeyboardInterrupt:
        print(f"qfcn {args.command}: interrupted; finished runs are kept, rerun to resume.", file=sys.stderr)
        return 130
    except commands.RunsFailed as exc:
        if args.debug:
            raise
        _error(args.command, exc)
        return 1
    except USER_ERRORS as exc:
        if args.debug:
            raise
        _error(args.command, exc)
        return 2
    except Exception as exc:  # a bug: still one line unless --debug
        if args.debug:
            raise
        _error(args.command, f"internal error {type(exc).__name__}: {exc} (rerun with --debug for the traceback)")
        return 1
    return 0
