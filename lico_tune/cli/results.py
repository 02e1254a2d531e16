"""The lico-tune subcommands that read results: index, report, dashboard (parsers in parser.py)."""
from __future__ import annotations

import sys
from typing import Optional

from ..layout import RUN_FILE
from .output import EXIT_BAD_INPUT, EXIT_OK, error as _error, say as _say


def _results_root(storage: str) -> Optional[str]:
    """The normalised root, or None (after an error message) when it does not exist."""
    import os

    from ..storage import Storage
    from ..storage.userpaths import check_reachable
    check_reachable(storage, "STORAGE")         # a cloud root answers within seconds, or a clear error
    st = Storage(storage)
    if st.is_local:
        try:
            os.stat(st.root)                    # permission denied on a folder above: said so, not "no such root"
        except (FileNotFoundError, NotADirectoryError):
            pass
    if not st.exists():
        _error(f"{storage}: no such results root. Pass the storage directory (or s3://, gs:// URI) "
               f"that `lico-tune run` wrote to (the spec's `storage`, default ~/lico-tune-results).")
        return None
    if not _has_experiments(st):
        return None
    return st.root


def _has_experiments(st) -> bool:
    """Checked before any catalog is opened, so that a wrong root gets an error and no file."""
    from ..results.scan import find_experiments
    try:
        found = find_experiments(st)
    except OSError as exc:
        _error(f"{st.root}: cannot be read ({exc}). Pass a results root you can read.")
        return False
    if not found:
        _error(f"{st.root} holds no Ray Tune experiment yet (no <experiment>/{RUN_FILE} or experiment_state-*.json); "
               f"pass the storage root `lico-tune run` wrote to, or run `lico-tune run SPEC --storage {st.root}` first.")
        return False
    return True


def cmd_index(args) -> int:
    """Rebuild the results catalog of a storage root from its files."""
    from ..results import index
    root = _results_root(args.storage)
    if root is None:
        return EXIT_BAD_INPUT
    import sqlalchemy.exc
    try:
        res = index(root, db=args.db, experiment=args.experiment)
    except sqlalchemy.exc.DatabaseError as exc:
        _error(f"the catalog {args.db or 'of ' + root} cannot be written ({str(exc.orig or exc).splitlines()[0]}): "
               f"a damaged file, or not a lico-tune catalog. Delete it (it is rebuilt from the files) or "
               f"pass another --db.")
        return EXIT_BAD_INPUT
    from ..results.table import status_counts
    counts = ", ".join(f"{n} {s}" for s, n in status_counts(res.trials).items()) or "no trials"
    _say(f"indexed {len(res.experiments)} experiment(s), {len(res.trials)} trial(s) ({counts}) "
         f"from {root} into {res.source}")
    for w in res.warnings:
        print(f"warning: {w}", file=sys.stderr, flush=True)
    return EXIT_OK


def cmd_report(args) -> int:
    """Print the ablation table, paired differences and best configurations."""
    from ..results import build_report, load_results, render
    if not 0 < args.level < 1:
        _error(f"--level {args.level}: a confidence level lies between 0 and 1; pass e.g. --level 0.95")
        return EXIT_BAD_INPUT
    if args.target_width is not None and not args.target_width > 0:
        _error(f"--target-width {args.target_width}: a half-width must be > 0 (in the metric's units); pass e.g. --target-width 0.5")
        return EXIT_BAD_INPUT
    root = _results_root(args.storage)
    if root is None:
        return EXIT_BAD_INPUT
    res = load_results(root, db=args.db, use_catalog=not args.no_catalog)
    if res.trials.empty and not res.experiments.empty:
        why = "; ".join(map(str, res.warnings[:3])) or "no trial has written results yet"
        _error(f"{root} holds no readable trial: {why}")
        return EXIT_BAD_INPUT
    if res.experiments.empty:
        _error(f"{root} holds no Ray Tune experiment yet (no <experiment>/experiment_state-*.json); "
               f"run `lico-tune run SPEC --storage {root}` first.")
        return EXIT_BAD_INPUT
    if args.experiment == "latest":
        from ..results.pick import latest_experiment
        args.experiment = latest_experiment(res)
        print(f"latest experiment of {root}: {args.experiment}", file=sys.stderr, flush=True)
    try:
        reports = build_report(res, args.experiment, metrics=args.metric or None, baseline=args.baseline,
                               level=args.level, method=args.ci, correction=args.correction, family=args.family,
                               margins=args.margin, target_width=args.target_width, only_arms=args.arms or ())
    except KeyError as exc:
        _error(str(exc.args[0]))
        return EXIT_BAD_INPUT
    except ValueError as exc:     # a malformed --margin
        _error(str(exc))
        return EXIT_BAD_INPUT
    sys.stdout.write(render(reports, args.format, root, res.warnings))
    sys.stdout.flush()
    shown = {r.experiment for r in reports}
    for w in res.warnings:
        if w.experiment in shown:
            print(f"warning: {w}", file=sys.stderr, flush=True)
    return EXIT_OK


def cmd_dashboard(args) -> int:
    """Start the Streamlit dashboard (lico_tune.cli.shipped.dashboard_app) on HOST:PORT."""
    import importlib.util

    from .shipped import dashboard_app
    app = dashboard_app()
    if app is None:
        _error("the dashboard app (package lico_tune_dashboard, or dashboards/app.py in a checkout) is not "
               "installed; reinstall lico-tune: pip install 'lico-tune[dashboard]'")
        return EXIT_BAD_INPUT
    if importlib.util.find_spec("streamlit") is None:
        _error("the dashboard needs Streamlit: pip install 'lico-tune[dashboard]'")
        return EXIT_BAD_INPUT
    from ..storage import normalise_root
    from ..storage.userpaths import check_reachable
    from .arguments import check_host
    check_host(args.host)
    check_reachable(args.storage, "STORAGE")
    storage = normalise_root(args.storage)
    cmd = [sys.executable, "-m", "streamlit", "run", str(app), "--server.port", str(args.port),
           "--server.address", args.host, "--server.headless", "true", "--browser.gatherUsageStats", "false",
           "--client.toolbarMode", "minimal",
           "--", "--storage", storage] + (["--db", args.db] if args.db else [])
    _say(f"lico-tune dashboard of {storage} at http://{args.host}:{args.port} (Ctrl-C stops it)")
    from .dashboard import run_forwarding_signals
    return run_forwarding_signals(cmd)
