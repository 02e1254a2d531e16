#!/usr/bin/env bash
# Continue the converged study in a new session: the pinned code in a detached worktree, the state
# committed at the end of the last part (docs/study/state/) copied back to the storage it ran in,
# then `lico-tune resume` (finished trials are not rerun; an interrupted one restarts from its last
# epoch's checkpoint). Stop it with one Ctrl-C (or SIGINT to the driver) before the session ends,
# then commit the state again: docs/study/continue.sh --save. Both experiments of the converged
# study have finished (docs/study/README.md: Parts); this is how their parts were run.
#
#   docs/study/continue.sh            # resume the placed_fmnist part (NAME=... for another experiment)
#   docs/study/continue.sh --save     # after stopping it: copy the state back into docs/study/state/
#   SPEC=search_spaces/study_converged_placed.yaml docs/study/continue.sh
#                                     # how the placed part was started (no state yet: `lico-tune run`)
set -euo pipefail
cd "$(dirname "$0")/../.."
REPO=$PWD
COMMIT=17c936c                         # the study's code (docs/study/README.md: Parts)
WT=/work/wt-study
STORAGE=/work/study-results
NAME=${NAME:-study-converged-placed_2026-12-04}   # the Fashion-MNIST part (study-converged_2026-12-04) is finished
STATE=docs/study/state/$NAME
MAX_FILE=$((4 * 1024 * 1024))          # larger files (a fine-tuned encoder's checkpoint) are not committed
if [ "${1:-}" = --save ]; then
  rm -rf "$STATE" && mkdir -p "$(dirname "$STATE")"
  cp -r "$STORAGE/$NAME" "$STATE"
  # A finished trial's weights are not needed to resume (its metrics are; `lico-tune rerun` of such a
  # record compares the metrics): they are left out. An unfinished trial keeps its last checkpoint,
  # unless it is too large to commit: then resume cannot continue it, and this says so.
  for trial in "$STATE"/trial_*/; do
    if [ -f "$trial/metrics.json" ]; then
      find "$trial" -name '*.pt' -delete
    else
      find "$trial" -type f -size +$((MAX_FILE / 1024))k | while read -r big; do
        echo "WARNING: $big (unfinished trial) is over 4 MiB and left out: stop the study when no such trial runs" >&2
        rm -f "$big"
      done
    fi
  done
  du -sh "$STATE"
  exit
fi
[ -d "$WT" ] || git worktree add --detach "$WT" "$COMMIT"
mkdir -p "$STORAGE"
SPEC=${SPEC:-}                         # the spec that starts NAME when it has no state yet
if [ ! -d "$STORAGE/$NAME" ] && [ -d "$STATE" ]; then cp -r "$STATE" "$STORAGE/$NAME"; fi
if [ ! -d "$STORAGE/$NAME" ] && [ -z "$SPEC" ]; then
  echo "$NAME has no state in $STATE or $STORAGE: to start it, give its spec, e.g. SPEC=search_spaces/study_converged_placed.yaml" >&2
  exit 2
fi
# The numbers depend on these versions (the MiniLM features changed between transformers 5.24 and
# 5.25): every part runs with the ones part 1 ran with (each trial's provenance.json records them).
PYTHON=${PYTHON:-$REPO/.venv/bin/python}
want="transformers==5.25.0 tokenizers==0.23.3 numpy==2.4.6 torch==2.14.1"
have=$("$PYTHON" -c 'import transformers, tokenizers, numpy, torch
t = torch.__version__.split("+")[0]
print(f"transformers=={transformers.__version__} tokenizers=={tokenizers.__version__} numpy=={numpy.__version__} torch=={t}")')
if [ "$have" != "$want" ]; then
  echo "This venv has $have; the study ran with $want. Install those (\"$PYTHON\" -m pip install ${want% torch*};" >&2
  echo "torch 2.14.1 comes from this machine's disk, see the Makefile), then run this again." >&2
  exit 2
fi
cd "$WT"
export RAY_TMPDIR=${RAY_TMPDIR:-/tmp/rt-study}
mkdir -p "$RAY_TMPDIR"
if [ ! -d "$STORAGE/$NAME" ]; then
  exec env PYTHONPATH="$WT" "$PYTHON" -m lico_tune.cli run "$SPEC" --storage "$STORAGE" --name "$NAME"
fi
exec env PYTHONPATH="$WT" "$PYTHON" -m lico_tune.cli resume "$STORAGE/$NAME"
