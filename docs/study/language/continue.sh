#!/usr/bin/env bash
# Run the language study (issue 32) in parts: the pinned code in a detached worktree, the results
# outside the clone (/work/study-results), `lico-tune run` the first time and `lico-tune resume` after
# (finished trials are kept; an interrupted one restarts from its last epoch's checkpoint). Stop a part
# with one SIGINT to the driver before the session ends, then save its state into the repository:
#
#   docs/study/language/continue.sh                 # start or continue Part A (study-language)
#   PART=B docs/study/language/continue.sh          # Part B (study-language-placed), after A
#   PART=C docs/study/language/continue.sh          # Part C (search_spaces/mm_dose.yaml), after B
#   docs/study/language/continue.sh --save          # after stopping: state -> docs/study/language/state/
#   docs/study/language/continue.sh --longrun       # the long-run CE runs behind the budget (logs committed)
set -euo pipefail
cd "$(dirname "$0")/../../.."
REPO=$PWD
COMMIT=a0b4137                         # the study's code: the commit that declared it (README: Parts)
WT=/work/wt-language
STORAGE=/work/study-results
PART=${PART:-A}
case "$PART" in
  A) NAME=study-language_2026-12-07; SPEC=search_spaces/study_language.yaml ;;
  B) NAME=study-language-placed_2026-12-07; SPEC=search_spaces/study_language_placed.yaml ;;
  # Part C's spec (mm_dose.yaml as Part C) was committed at 98d2e20, 12 minutes after the declaration;
  # lico_tune/ is the same at both commits (`git diff a0b4137 98d2e20 -- lico_tune` is empty).
  C) NAME=study-language-dose_2026-12-07; SPEC=search_spaces/mm_dose.yaml; COMMIT=98d2e20; WT=/work/wt-language-c ;;
  *) echo "PART is A, B or C" >&2; exit 2 ;;
esac
STATE=$REPO/docs/study/language/state/$NAME  # absolute: the script runs from the worktree below
if [ "${1:-}" = --save ]; then
  rm -rf "$STATE" && mkdir -p "$(dirname "$STATE")"
  cp -r "$STORAGE/$NAME" "$STATE"
  # A finished trial's weights are not needed to resume (its metrics are); an unfinished one keeps its
  # last checkpoint (the tiny CNN's are well under a MiB).
  for trial in "$STATE"/trial_*/; do
    if [ -f "$trial/metrics.json" ]; then find "$trial" -name '*.pt' -delete; fi
  done
  du -sh "$STATE"
  exit
fi
# The numbers depend on these versions (provenance.json of every trial records them).
PYTHON=${PYTHON:-$REPO/.venv/bin/python}
want="transformers==5.25.0 tokenizers==0.23.3 numpy==2.4.6 torch==2.14.1"
have=$("$PYTHON" -c 'import transformers, tokenizers, numpy, torch
t = torch.__version__.split("+")[0]
print(f"transformers=={transformers.__version__} tokenizers=={tokenizers.__version__} numpy=={numpy.__version__} torch=={t}")')
if [ "$have" != "$want" ]; then
  echo "This venv has $have; the study runs with $want. Install those, then run this again." >&2
  exit 2
fi
[ -d "$WT" ] || git worktree add --detach "$WT" "$COMMIT"
[ "$(git -C "$WT" rev-parse HEAD)" = "$(git rev-parse "$COMMIT^{commit}")" ] || {
  echo "$WT is not at the pinned commit $COMMIT: remove it (git worktree remove $WT) and run this again" >&2; exit 2; }
mkdir -p "$STORAGE"
export RAY_TMPDIR=${RAY_TMPDIR:-/tmp/rt-language}
mkdir -p "$RAY_TMPDIR"
cd "$WT"
if [ "${1:-}" = --longrun ]; then  # CE to its long-run accuracy in each regime: what "within 3 points" is measured against
  [ "$PART" != C ] || { echo "Part C reads its doses against its own alpha = 0 anchor: no long run" >&2; exit 2; }
  out=$REPO/docs/study/language/longrun
  mkdir -p "$out"
  run() {  # name, then --set overrides on the spec's base (the ce arm's fields)
    local name=$1; shift
    PYTHONPATH="$WT" "$PYTHON" -m lico_tune.cli train "$SPEC" --out "$STORAGE/longrun/$name" --set lico.alpha=0 "$@" \
      2>&1 | tee "$out/$name.log"
  }
  if [ "$PART" = A ]; then
    run fmnist_ce_12ep --set train.epochs=12
    run fmnist_ce_l100_668ep --set data.labels_per_class=100 --set train.epochs=668 --set eval.every=167
  else
    run placed_ce_12ep --set lico.beta=0 --set train.epochs=12 --set eval.road=false --set eval.sanity=false
  fi
  exit
fi
if [ -d "$STATE" ] && [ ! -d "$STORAGE/$NAME" ]; then
  cp -r "$STATE" "$STORAGE/$NAME"
  # The state comes from this repository's history (reviewed, committed): sign it with this machine's
  # key, which `resume` requires (docs/sweeps.md "What is trusted"); a key from another session differs.
  PYTHONPATH="$WT" "$PYTHON" -m lico_tune.cli trust "$STORAGE/$NAME"
fi
if [ ! -d "$STORAGE/$NAME" ]; then
  exec env PYTHONPATH="$WT" "$PYTHON" -m lico_tune.cli run "$SPEC" --storage "$STORAGE" --name "$NAME"
fi
exec env PYTHONPATH="$WT" "$PYTHON" -m lico_tune.cli resume "$STORAGE/$NAME"
