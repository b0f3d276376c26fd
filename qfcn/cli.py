"""The command line: thin argument parsing that calls :mod:`qfcn.study.runner`.

Commands::

    python -m qfcn study --params params/fast.yaml --out reports/fast [--data GLAS_FOLDER]
    python -m qfcn sweep --params FILE --out DIR [--workers N] [--scheduler ADDRESS]
    python -m qfcn test [PYTEST ARGS ...]
"""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from qfcn.io import ROOT
from qfcn.study import runner


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m qfcn", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)

    def common(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--params", required=True, type=Path, help="a params YAML file (params/*.yaml)")
        sp.add_argument("--out", required=True, type=Path, help="the study folder to write into")
        sp.add_argument("--data", type=Path, default=None,
                        help="a folder in GlaS layout; default: the built-in synthetic GlaS")
        sp.add_argument("--workers", type=int, default=1, help="runs executed at once (default 1)")
        sp.add_argument("--scheduler", default=None,
                        help="address of an existing Dask scheduler (tcp://host:port) to run on")
        sp.add_argument("--no-progress", action="store_true", help="hide progress bars")

    common(sub.add_parser("study", help="the whole study: data, batch of runs, ablations, report"))
    common(sub.add_parser("sweep", help="the notebook chain for every point of the params file's grid"))
    t = sub.add_parser("test", help="run the test suite (arguments are passed to pytest)")
    t.add_argument("pytest_args", nargs=argparse.REMAINDER)
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "test":
        return subprocess.call([sys.executable, "-m", "pytest", *args.pytest_args], cwd=ROOT)
    kwargs = dict(params_path=args.params, out=args.out, data=args.data, workers=args.workers,
                  scheduler=args.scheduler, progress=not args.no_progress)
    try:
        if args.command == "study":
            runner.run_study(**kwargs)
        else:
            runner.run_sweep(**kwargs)
    except runner.StudyError as exc:
        print(f"qfcn {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"qfcn {args.command}: interrupted; finished runs are kept, rerun to resume.", file=sys.stderr)
        return 130
    return 0
