"""The `lico-tune` command line: its parser and `main(argv)` (callable from tests).

Exit codes: 0 success, 1 a trial failed (e.g. diverged), 2 bad input (spec, data, checkpoint).
"""
from __future__ import annotations

import argparse
import sys
import textwrap
from typing import Callable, Optional

import lico_tune

from ..errors import BadInput
from ..layout import CATALOG_FILE, CHECKPOINT_FILE, DEFAULT_STORAGE
from ..names import SALIENCY_METHODS
from ..storage.userpaths import environment_errors
from .arguments import check_catalog_url, check_paths, check_signing_key, port, positive_int, refuse_unknown_options, \
    user_paths
from .commands import (cmd_explain, cmd_rerun, cmd_resume, cmd_run, cmd_schema, cmd_specs, cmd_train, cmd_trust,
                       cmd_validate)
from .help import epilog
from .output import EXIT_BAD_INPUT, EXIT_INTERRUPTED, error as _error, interrupted, output_closed
from .results import cmd_dashboard, cmd_index, cmd_report

Command = Callable[..., argparse.ArgumentParser]     # command(name, help=...) -> its subparser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lico-tune",
        description="Hyperparameter search and ablations for LICO (language-image consistency) classifiers.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=textwrap.dedent("""\
            examples:
              lico-tune specs
              lico-tune validate quickstart.yaml
              lico-tune train search_spaces/quickstart.yaml --set train.epochs=1
              lico-tune schema -o lico-tune.schema.json"""))
    parser.add_argument("--version", action="version", version=f"%(prog)s {lico_tune.__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, **kw):   # every command's help ends with its examples and exit codes
        return sub.add_parser(name, epilog=epilog(name), formatter_class=argparse.RawDescriptionHelpFormatter, **kw)

    _spec_commands(command)
    _sweep_commands(command)
    _record_commands(command)
    _results_commands(command)
    return parser


def _add_set(p: argparse.ArgumentParser) -> None:
    p.add_argument("--set", action="append", default=[], metavar="PATH=VALUE",
                   help="override a field, e.g. --set lico.ot.epsilon=0.05 (trial fields may omit 'base.'); "
                        "repeatable; VALUE is parsed as YAML. It replaces a search.space axis on the "
                        "same field (a note says so); an ablation arm that sets it still wins")


def _spec_commands(command: Command) -> None:
    """specs, validate, schema, train: a spec read, or its base trial trained once without Ray. SPEC is a
    file, or the name of a spec shipped with lico-tune (`lico-tune specs`)."""
    p = command("specs", help="list the specs shipped with lico-tune (pass a name as SPEC: quickstart.yaml)")
    p.set_defaults(func=cmd_specs)

    p = command("validate", help="check specs; exit 0 if all are valid, 2 otherwise")
    p.add_argument("specs", nargs="+", metavar="SPEC")
    _add_set(p)
    p.add_argument("--print", action="store_true", help="print the resolved spec with every default")
    p.set_defaults(func=cmd_validate)

    p = command("schema", help="print the JSON Schema of a spec (for editor completion of YAML)")
    p.add_argument("-o", "--output", help="write to this file instead of standard output")
    p.set_defaults(func=cmd_schema)

    p = command("train", help="train the spec's base trial once, without Ray")
    p.add_argument("spec", metavar="SPEC")
    _add_set(p)
    p.add_argument("--out", help="run directory (default: a new runs/<spec name>_<date>_<time>)")
    p.add_argument("--resume", action="store_true", help="continue from the checkpoint in the run directory "
                   "(without --out: the newest runs/<spec name>_*)")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.set_defaults(func=cmd_train)


def _sweep_commands(command: Command) -> None:
    """run, resume, trust: Ray Tune sweeps and the experiments they leave."""
    p = command("run", help="run the spec's sweep or ablation with Ray Tune (exit 1 if a trial failed)")
    p.add_argument("spec", metavar="SPEC")
    _add_set(p)
    p.add_argument("--smoke-test", action="store_true",
                   help="shrink to 2 trials of 1 short epoch on a data subset (for CI)")
    p.add_argument("--address", metavar="HOST:PORT|auto",
                   help="Ray cluster to join ('auto': the cluster on this node); default: start Ray here")
    p.add_argument("--storage", metavar="URI", help="results root, a path or s3://, gs://... (default: spec's storage)")
    p.add_argument("--name", help="experiment name (default: <spec name>_<date>_<time>)")
    p.add_argument("--verbose", action="store_true",
                   help="Ray's full status table instead of one line per trial event")
    p.add_argument("--status-every", type=float, default=30.0, metavar="SECONDS",
                   help="a status line (trials running, finished, errored, pending) every SECONDS; 0: none "
                        "(default: 30)")
    p.set_defaults(func=cmd_run)

    p = command("resume", help="finish an interrupted experiment (finished trials are not rerun)")
    p.add_argument("experiment_dir", metavar="EXPERIMENT_DIR", help="<storage>/<experiment name>, as `run` printed")
    p.add_argument("--address", metavar="HOST:PORT|auto", help="Ray cluster to join; default: start Ray here")
    p.set_defaults(func=cmd_resume)

    p = command("trust", help="sign an experiment directory you checked, so that `resume` loads it",
                description=textwrap.fill("`resume` unpickles Ray's state files (tuner.pkl, experiment_state-*.json, the "
                            "searcher's state), which runs code, so it loads only files that lico-tune signed "
                            "with your key ($LICO_TUNE_KEY_FILE, default ~/.config/lico-tune/manifest.key). "
                            "An experiment from an older lico-tune, another user, a copy whose files changed, or "
                            "a driver killed with SIGKILL is refused. Check first who could write the directory "
                            "(a shared bucket, a colleague's folder): signing it means you trust every file in it.", 96))
    p.add_argument("experiment_dir", metavar="EXPERIMENT_DIR", help="<storage>/<experiment name>")
    p.set_defaults(func=cmd_trust)


def _record_commands(command: Command) -> None:
    """rerun, explain: one trial's record replayed."""
    p = command("rerun", help="retrain one trial from its record and check that it matches bit for bit "
                              "(exit 0 match, 1 mismatch)")
    p.add_argument("trial_dir", metavar="TRIAL_DIR",
                   help="a `lico-tune train` output directory or a Ray Tune trial directory (<storage>/<exp>/trial_*)")
    p.add_argument("--out", help="train into this directory and keep it (default: a temp dir, removed)")
    p.add_argument("--show", type=int, default=20, help="differences listed per kind (default: 20)")
    p.add_argument("--quiet", action="store_true", help="no training progress")
    p.set_defaults(func=cmd_rerun)

    p = command("explain", help="draw saliency maps and insertion/deletion curves from a checkpoint")
    p.add_argument("checkpoint", metavar="CHECKPOINT", help=f"{CHECKPOINT_FILE} or the run directory holding it")
    p.add_argument("images", nargs="*", metavar="IMAGES",
                   help="image files (default: the trial's fixed test images)")
    p.add_argument("--method", action="append", choices=SALIENCY_METHODS,
                   help="saliency method; repeatable (default: gradcam)")
    p.add_argument("-o", "--output", default="explain.png", help="figure path (default: explain.png)")
    p.add_argument("-n", type=positive_int, default=6, help="number of fixed test images when none are given")
    p.add_argument("--weights", choices=["ema", "raw"], default="ema", help="EMA weights (if saved) or raw ones")
    p.add_argument("--arm", help="CHECKPOINT is then an experiment directory (or a results root: its newest "
                   "experiment); explain the finished trial of this arm with the best value of the spec's first "
                   "search metric")
    p.add_argument("--dataset", help="with --arm: only trials on this dataset (data.name)")
    p.set_defaults(func=cmd_explain)


def _results_commands(command: Command) -> None:
    """index, report, dashboard: a storage root's results."""
    p = command("index", help="rebuild the results catalog of a storage root from its files")
    p.add_argument("storage", metavar="STORAGE", help="results root (a path or s3://, gs://...)")
    p.add_argument("--experiment", metavar="NAME", help="only this experiment")
    p.add_argument("--db", metavar="URL", help="catalog database, any SQLAlchemy URL "
                   f"(default: $LICO_TUNE_CATALOG or sqlite:///STORAGE/{CATALOG_FILE})")
    p.set_defaults(func=cmd_index)

    p = command("report", help="ablation table (mean ± CI over seeds), paired tests, best configurations")
    p.add_argument("storage", metavar="STORAGE", help="results root (a path or s3://, gs://...)")
    p.add_argument("--experiment", metavar="NAME", help="only this experiment; 'latest': the newest one (by its "
                   "creation time) (default: every one)")
    p.add_argument("--format", choices=["md", "csv", "latex", "json"], default="md")
    p.add_argument("--metric", action="append", default=[], metavar="NAME",
                   help="a metric to tabulate, e.g. saliency/gradcam/insertion (repeatable; default: the spec's "
                        "search metrics, test/acc, test/acc_ema and each saliency method's overall score)")
    p.add_argument("--arm", action="append", metavar="ARM", dest="arms",
                   help="only this arm (repeatable) and the baselines in the tables and tests: a declared "
                        "family, e.g. --arm lico --arm mm_default (default: every arm)")
    p.add_argument("--baseline", action="append", metavar="ARM",
                   help="arm the others are compared with (default: ce); repeatable: --baseline ce --baseline "
                        "lico compares every arm with each (the first leads the table and decides what is bold); "
                        "the correction covers the comparisons with every baseline")
    p.add_argument("--ci", choices=["t", "bootstrap"], default="t", help="confidence interval (default: t)")
    p.add_argument("--level", type=float, default=0.95, help="confidence level (default: 0.95)")
    p.add_argument("--correction", choices=["holm", "bh"], default="holm",
                   help="multiple-comparison correction: Holm (family-wise error) or Benjamini-Hochberg (false "
                        "discovery rate); default: holm")
    p.add_argument("--family", choices=["report", "metric"], default="report",
                   help="tests corrected together: every paired test of the report (default) or each metric's")
    p.add_argument("--margin", action="append", default=[], metavar="[METRIC=]M",
                   help="equivalence margin for a TOST test, in the metric's units (accuracy: points), e.g. "
                        "--margin 0.5 or --margin test/acc=0.5 --margin saliency/gradcam/overall=0.02 "
                        "(repeatable); lets the report say 'no difference larger than M'")
    p.add_argument("--target-width", type=float, metavar="W",
                   help="half-width of the paired interval to plan for: the report gives the seeds it needs "
                        "(default: the margin)")
    p.add_argument("--db", metavar="URL", help=f"catalog database (default: sqlite:///STORAGE/{CATALOG_FILE})")
    p.add_argument("--no-catalog", action="store_true", help="read the files only; do not write a catalog")
    p.set_defaults(func=cmd_report)

    p = command("dashboard", help="start the Streamlit dashboard of a storage root")
    p.add_argument("storage", metavar="STORAGE", nargs="?", default=DEFAULT_STORAGE,
                   help=f"results root (default: {DEFAULT_STORAGE})")
    p.add_argument("--port", type=port, default=8501, help="TCP port, 1 to 65535 (default: 8501)")
    p.add_argument("--host", default="127.0.0.1", help="an address of this machine to listen on (default: "
                   "127.0.0.1, this machine only; 0.0.0.0: every interface)")
    p.add_argument("--db", metavar="URL", help=f"catalog database (default: sqlite:///STORAGE/{CATALOG_FILE})")
    p.set_defaults(func=cmd_dashboard)


def main(argv: Optional[list[str]] = None) -> int:
    parser = build_parser()
    refuse_unknown_options(parser, sys.argv[1:] if argv is None else list(argv))
    args = parser.parse_args(argv)
    try:
        check_paths(args)                       # NUL bytes, ~nosuchuser, over-long paths: before anything runs
        check_catalog_url(args)                 # --db: a URL, not a directory, a symlink or a FIFO
        with environment_errors(user_paths(args)):    # permission denied, read-only, disk full on the user's paths
            check_signing_key(args)             # run, resume, trust: the key is made or read before Ray starts
            code = args.func(args)
        sys.stdout.flush()                      # here, so that a closed pipe is caught below, not at exit
        return code
    except BadInput as exc:     # every error the user can fix, once: one paragraph, exit 2 (bugs keep their traceback)
        _error(str(exc))
        return EXIT_BAD_INPUT
    except BrokenPipeError:     # `lico-tune report ROOT | head -1`: the reader has what it wanted
        return output_closed()
    except KeyboardInterrupt:
        _error(interrupted(args.command))
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
