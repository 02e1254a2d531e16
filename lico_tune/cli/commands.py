"""The spec and trial commands (validate, schema, train, run, resume, trust, rerun, explain): each
takes argparse's namespace and returns an exit code (0 success, 1 a trial failed, 2 bad input).
"""
from __future__ import annotations

import itertools
import json
import re
import sys
from pathlib import Path
from typing import Optional

from ..layout import CHECKPOINT_FILE
from ..storage.safe_files import write_atomic
from ..spec import SpecError, dump_yaml, json_schema, load_spec
from ..storage.userpaths import check_reachable, environment_errors, full_disk_errors
from .arguments import check_output_file
from .help import train_display
from .shipped import describe, find_spec, shipped_specs
from .output import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK, error as _error, say as _say


def _load(path: str, overrides: list[str]):
    """load_spec of a spec file or a shipped spec's name (shipped.find_spec), printing what the --set
    overrides replaced (search axes) or cannot change (arms)."""
    notices: list[str] = []
    spec = load_spec(_spec_path(path), overrides, notices)
    for n in notices:
        print(f"note: {n}", file=sys.stderr, flush=True)
    return spec


def _spec_path(arg: str) -> str:
    """The file a SPEC argument names; a shipped spec's path is said once (stderr)."""
    path, shipped = find_spec(arg)
    if shipped:
        print(f"note: {arg} is the spec shipped with lico-tune, {path}", file=sys.stderr, flush=True)
    return path


def cmd_specs(args) -> int:
    """List the specs shipped with lico-tune, each with the first sentence of its header comment."""
    specs = shipped_specs()
    if not specs:
        _error("this installation has no shipped specs (the package lico_tune_specs, or search_spaces/ in a "
               "checkout); reinstall lico-tune.")
        return EXIT_BAD_INPUT
    _say(f"Specs shipped with lico-tune ({next(iter(specs.values())).parent}); pass a name to validate, train or "
         f"run (e.g. `lico-tune run quickstart.yaml --smoke-test`), or copy one to start your own:")
    width = max(map(len, specs))
    for name, path in specs.items():
        _say(f"  {name:<{width}}  {describe(path)}")
    return EXIT_OK


def cmd_validate(args) -> int:
    from ..plan import plan_search
    status = EXIT_OK
    for path in args.specs:
        try:
            spec = _load(path, args.set)
            plan = plan_search(spec)     # the search checks `lico-tune run` makes: cells, ranges, scheduler
        except SpecError as exc:
            _error(str(exc))
            status = EXIT_BAD_INPUT
            continue
        arms = ", ".join(spec.ablation) if spec.ablation else "none"
        _say(f"{path}: ok (name {spec.name}; {len(spec.search.space)} searched fields; arms: {arms})")
        for note in plan.notes:         # searched fields that cannot act in some arms
            _say(f"note: {note}")
        if args.print:
            _say(dump_yaml(spec))
    return status


def cmd_schema(args) -> int:
    text = json.dumps(json_schema(), indent=2)
    if args.output:
        check_output_file(args.output, "-o/--output", "lico-tune.schema.json")
        write_atomic(args.output, (text + "\n").encode())
        _say(f"wrote {args.output}")
    else:
        print(text)
    return EXIT_OK


def cmd_train(args) -> int:
    # Imported here so `validate` and `schema` stay fast and need no torch import.
    from ..layout import METRICS_FILE
    from ..train import TrialDiverged, train_trial

    spec = _load(args.spec, args.set)
    out = _train_out(args, spec.name)
    if out is None:
        return EXIT_BAD_INPUT
    log, progress, close = train_display(args.quiet)
    try:
        final = train_trial(spec.base, out, log=log, resume=args.resume, progress=progress)
    except TrialDiverged as exc:
        _error(str(exc))
        return EXIT_FAILED
    finally:
        close()
    accs = ", ".join(f"{k} {final[k]:.2f}%" for k in ("test/acc", "test/acc_ema") if k in final)
    _say(f"done: {accs}; metrics in {out / METRICS_FILE}, checkpoint in {out / CHECKPOINT_FILE}")
    return EXIT_OK


def _train_out(args, spec_name: str) -> Optional[Path]:
    """--out, else a new runs/<spec name>_<date>_<time>; with --resume, the newest of those."""
    from ..layout import RUNS_DIR, newest_stamped, stamped
    if args.out:
        return Path(args.out)
    if not args.resume:
        return RUNS_DIR / stamped(spec_name)
    out = newest_stamped(RUNS_DIR, spec_name)
    if out is None:
        _error(f"--resume without --out: no run of '{spec_name}' under {RUNS_DIR}/ to continue "
               f"(runs are {RUNS_DIR}/{spec_name}_<date>_<time>). Pass --out DIR, or drop --resume.")
        return None
    _say(f"resuming {out} (the newest run of {spec_name}; pass --out DIR for another)")
    return out


def cmd_run(args) -> int:
    """Validate, then run the spec's sweep with Ray Tune; print a progress table and a summary."""
    from ..plan import plan_search
    plan = plan_search(_load(args.spec, args.set), name=args.name, storage=args.storage, smoke=args.smoke_test)
    for note in plan.notes:             # searched fields that cannot act in some arms
        _say(f"note: {note}")
    what = "--storage" if args.storage else "storage"
    with environment_errors({plan.storage: what}):     # the spec's storage is the user's path too
        check_reachable(plan.storage, what)             # a cloud root answers, in seconds
        from ..plan.preflight import preflight
        preflight(plan, args.address, say=_say)      # resources and input files, before Ray starts
        if not plan.smoke and (note := _cost_note(find_spec(args.spec)[0])):
            _say(f"note: {args.spec} says: {note}" + (" This run asks for no GPU (resources.gpu=0): on CPUs it "
                                                     "takes far longer." if not plan.spec.resources.gpu else ""))
        from ..tune import run
        with full_disk_errors(plan.storage, what) as seen:
            summary = seen(run(plan, address=args.address, verbose=args.verbose, status_every_s=args.status_every))
    return _sweep_exit(summary)


def _cost_note(path: str) -> Optional[str]:
    """The 'Cost: ...' sentence of a spec file's header comment (the shipped paper-scale specs have one)."""
    try:
        lines = Path(path).read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return None
    header = " ".join(ln.lstrip("#").strip() for ln in itertools.takewhile(lambda ln: ln.startswith("#"), lines))
    m = re.search(r"Cost:.*?\.(?=\s|$)", header)
    return m.group(0) if m else None


def _sweep_exit(summary) -> int:
    from ..tune.interrupt import EXIT_CODES
    if getattr(summary, "interrupted", None):       # 130 (SIGINT) / 143 (SIGTERM), as a shell would
        return EXIT_CODES.get(summary.interrupted, EXIT_FAILED)
    return EXIT_FAILED if summary.n_errors or summary.n_unfinished else EXIT_OK


def cmd_resume(args) -> int:
    """Finish an interrupted experiment; finished trials are not run again."""
    from ..trust.lock import experiment_lock
    from ..plan.preflight import check_plan, check_resume
    from ..storage import normalise_root
    check_reachable(args.experiment_dir, "EXPERIMENT_DIR")
    check_plan(args.experiment_dir)              # a lico-tune experiment (its plan reads), before the lock
    # The lock before the signatures: a live driver's experiment is "being run by another driver"
    # (its state may be mid-save, which the signature check would call tampering).
    with experiment_lock(normalise_root(args.experiment_dir), say=_say):   # one driver: refused before Ray loads
        check_resume(args.experiment_dir)        # signatures, before Ray starts
        from ..tune import resume
        with full_disk_errors(args.experiment_dir, "EXPERIMENT_DIR") as seen:
            return _sweep_exit(seen(resume(args.experiment_dir, address=args.address)))


def cmd_trust(args) -> int:
    """Sign an experiment directory the user checked, so that `resume` loads it."""
    from ..plan.preflight import check_plan
    from ..trust import key_file, sign_experiment
    check_reachable(args.experiment_dir, "EXPERIMENT_DIR")   # a cloud endpoint answers, in seconds
    d = check_plan(args.experiment_dir)
    names = sign_experiment(d)
    _say(f"signed {len(names)} files of {d} with {key_file()}: {', '.join(names)}")
    return EXIT_OK


def cmd_rerun(args) -> int:
    """Retrain one trial from its record; exit 0 when bit-identical, 1 when not."""
    from ..train import TrialDiverged
    from ..train.rerun import find_record, rerun, warnings_for
    try:
        rec = find_record(args.trial_dir)
        for w in warnings_for(rec):
            print(f"warning: {w}", file=sys.stderr, flush=True)
        _say(f"retraining {args.trial_dir} ({rec.kind} record, epoch {rec.epoch} of {rec.config.train.epochs}, "
             f"seed {rec.config.train.seed})")
        rec, cmp, out = rerun(args.trial_dir, args.out, log=None if args.quiet else _say)
    except TrialDiverged as exc:
        _error(f"the rerun diverged where the record did not: {exc}")
        return EXIT_FAILED
    where = f" (kept in {out})" if args.out else ""
    if cmp.match:
        what = (f"{cmp.metrics} metric values are bit-identical (the record has no weights: metrics only)"
                if rec.metrics_only else
                f"all {cmp.tensors} checkpoint tensors and {cmp.metrics} metric values are bit-identical")
        _say(f"match: {what}{where}")
        return EXIT_OK
    _say(f"MISMATCH{where}: {len(cmp.tensor_diffs)} of {cmp.tensors} tensors, {len(cmp.metric_diffs)} of "
         f"{cmp.metrics} metric values and {len(cmp.state_diffs)} other numbers differ")
    for label, items in (("tensor", cmp.tensor_diffs), ("metric", cmp.metric_diffs), ("state", cmp.state_diffs)):
        for line in items[:args.show]:
            _say(f"  {label} {line}")
        if len(items) > args.show:
            _say(f"  ... and {len(items) - args.show} more {label} differences")
    return EXIT_FAILED


def cmd_explain(args) -> int:
    check_output_file(args.output, "-o/--output" + (" (default explain.png)" if args.output == "explain.png" else ""),
                      "explain.png")              # before torch loads: seconds
    from ..train.explain import explain

    checkpoint = args.checkpoint
    if args.arm is not None or args.dataset is not None:
        from ..results.pick import best_trial
        try:
            best = best_trial(args.checkpoint, arm=args.arm, dataset=args.dataset)
        except KeyError as exc:
            _error(str(exc.args[0]))
            return EXIT_BAD_INPUT
        _say(f"explaining the {best.reason()}")
        checkpoint = best.checkpoint
    out = explain(checkpoint, args.images, args.method or ["gradcam"], args.output, args.n, args.weights)
    _say(f"wrote {out} (overlays and curve data in {out.with_name(out.stem + '_files')})")
    return EXIT_OK
