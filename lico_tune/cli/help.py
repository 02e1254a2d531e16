"""Texts of the `lico-tune` help: an example per command and the exit codes (shown in every
command's help), and the progress display of `lico-tune train` (a bar on a terminal, lines otherwise)."""
from __future__ import annotations

import sys
import textwrap
from typing import Callable, Optional

EXIT_TEXT = {
    "specs": "0 listed; 2 this installation has no shipped specs",
    "validate": "0 every spec is valid; 2 a spec is invalid (the error names the field and the fix)",
    "schema": "0 written; 2 -o cannot be written (a directory, no such folder, read-only)",
    "train": "0 trained; 1 the trial diverged (loss NaN/inf); 2 bad input (spec, data, checkpoint, --resume "
             "mismatch); 130 interrupted (the last epoch's checkpoint is kept)",
    "run": "0 every trial finished; 1 a trial failed or was left unfinished (the sweep still ends with a "
           "summary); 2 bad input (spec, search, cluster address); 130 interrupted (resume with "
           "`lico-tune resume`)",
    "resume": "0 every trial finished; 1 a trial failed or is unfinished; 2 not an experiment directory, a "
              "state Ray cannot restore, or files not signed with your key (see `lico-tune trust`); "
              "130 interrupted",
    "trust": "0 signed; 2 not an experiment directory, or the key file is unusable",
    "rerun": "0 the retrained trial matches bit for bit; 1 it does not (or diverged); 2 bad input (no record)",
    "explain": "0 figure written; 2 bad input (checkpoint, images, -n, -o)",
    "index": "0 catalog written; 2 no such results root, or one that cannot be read or reached",
    "report": "0 report printed; 2 bad input (no results, unknown experiment, metric or baseline, bad "
              "--level/--margin)",
    "dashboard": "the exit status of Streamlit (0 after Ctrl-C); 2 Streamlit or the app is missing, a bad "
                 "--port or --host, a cloud root that does not answer",
}

EXAMPLES = {
    "specs": ["lico-tune specs                              # each shipped spec and its question",
              "lico-tune run quickstart.yaml --smoke-test   # a shipped spec, by name, from any folder"],
    "validate": ["lico-tune validate search_spaces/quickstart.yaml",
                 "lico-tune validate search_spaces/*.yaml --set train.epochs=1 --print"],
    "schema": ["lico-tune schema -o lico-tune.schema.json"],
    "train": ["lico-tune train search_spaces/quickstart.yaml --set train.epochs=1 --out runs/try1",
              "lico-tune train search_spaces/quickstart.yaml --out runs/try1 --set train.epochs=3 --resume"],
    "run": ["lico-tune run search_spaces/quickstart.yaml --smoke-test --storage /tmp/lico-results",
            "lico-tune run search_spaces/ablation.yaml --address auto --verbose"],
    "resume": ["lico-tune resume ~/lico-tune-results/quickstart_2026-01-01_12-00-00"],
    "trust": ["lico-tune trust /shared/results/ablation_2026-01-01_12-00-00   # after checking who wrote it",
              "lico-tune resume /shared/results/ablation_2026-01-01_12-00-00"],
    "rerun": ["lico-tune rerun ~/lico-tune-results/quickstart/trial_3f2a1_00000_lico"],
    "explain": ["lico-tune explain runs/try1 --method gradcam --method rise -o explain.png"],
    "index": ["lico-tune index ~/lico-tune-results"],
    "report": ["lico-tune report ~/lico-tune-results --experiment ablation --margin test/acc=0.5",
               "lico-tune report ~/lico-tune-results --experiment study --baseline ce --baseline lico",
               "lico-tune report ~/lico-tune-results --format csv > ablation.csv"],
    "dashboard": ["lico-tune dashboard ~/lico-tune-results --port 8501"],
}


def epilog(command: str) -> str:
    """The help's closing part: examples and exit codes of `command`."""
    lines = ["example" + ("s" if len(EXAMPLES[command]) > 1 else "") + ":"]
    lines += [f"  {e}" for e in EXAMPLES[command]]
    lines += ["", "exit codes:", textwrap.fill(EXIT_TEXT[command], 96, initial_indent="  ", subsequent_indent="  ")]
    return "\n".join(lines)


def train_display(quiet: bool, stream=None) -> tuple[Callable[[str], None], Optional[Callable[[int, int], None]],
                                                      Callable[[], None]]:
    """(log, progress, close) for `lico-tune train`: on a terminal a tqdm bar with ETA and the log
    lines above it; otherwise (a pipe, a file, CI) the plain log lines and no bar."""
    stream = stream or sys.stdout
    if quiet:
        return (lambda _m: None), None, (lambda: None)
    if not stream.isatty():
        def log(msg: str) -> None:
            print(msg, file=stream, flush=True)
        return log, None, (lambda: None)
    from tqdm import tqdm
    bar = tqdm(total=0, unit="step", file=stream, dynamic_ncols=True, leave=True)

    def progress(step: int, total: int) -> None:
        if bar.total != total:
            bar.reset(total=total)
        bar.update(step - bar.n)   # a resumed run starts part way

    return (lambda msg: bar.write(msg, file=stream)), progress, bar.close
