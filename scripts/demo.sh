#!/usr/bin/env bash
# `make demo`: what lico-tune is for, in one go. Runs the quick-start ablation (CE vs LICO on
# Fashion-MNIST and digits, 2 seeds, 8 trials) as a Ray Tune sweep into its own experiment
# directory, prints the ablation table with the health of the LICO terms, draws the saliency maps
# of the best LICO trial, and says what to do next. Rerunnable: each run is a new experiment
# (quickstart_<date>_<time>); earlier ones are kept.
#
# Environment (all optional):
#   LICO_TUNE  the command (default: $VENV/bin/lico-tune when VENV is set, else lico-tune)
#   STORAGE    results root (default: ~/lico-tune-results, the spec's storage)
#   DEMO_ARGS  extra arguments of `lico-tune run`, e.g. --smoke-test (2 trials of 5 steps, for CI)
set -euo pipefail
cd "$(dirname "$0")/.."

SPEC=search_spaces/quickstart.yaml
LICO_TUNE=${LICO_TUNE:-${VENV:+$VENV/bin/}lico-tune}
STORAGE=${STORAGE:-$HOME/lico-tune-results}
DEMO_ARGS=${DEMO_ARGS:-}
NAME=quickstart_$(date +%Y-%m-%d_%H-%M-%S)
case " $DEMO_ARGS " in *" --smoke-test "*) NAME=$NAME-smoke ;; esac   # run's own suffix for smoke tests
EXPERIMENT=$STORAGE/$NAME
FIGURE=$EXPERIMENT/best_lico_explain.png

echo "== 1/3 The quick-start ablation as a sweep: lico-tune run $SPEC --name $NAME =="
# shellcheck disable=SC2086  # DEMO_ARGS is a list of words
$LICO_TUNE run "$SPEC" --storage "$STORAGE" --name "$NAME" $DEMO_ARGS

echo
echo "== 2/3 The ablation table: lico-tune report $STORAGE --experiment $NAME =="
$LICO_TUNE report "$STORAGE" --experiment "$NAME"

echo
echo "== 3/3 Saliency maps of the best LICO trial (Fashion-MNIST): lico-tune explain $EXPERIMENT --arm lico =="
$LICO_TUNE explain "$EXPERIMENT" --arm lico --dataset fashion_mnist -o "$FIGURE"

cat <<NEXT

== Next ==
  Look at the figure (test images, Grad-CAM overlays, insertion/deletion curves):
      $FIGURE
  Browse every experiment, trial, learning curve and health curve in the dashboard:
      make dashboard      (or: $LICO_TUNE dashboard $STORAGE)
  The newest experiment's report again (--format json|csv|latex for the numbers):
      $LICO_TUNE report $STORAGE --experiment latest
  A bigger study: LICO and its terms trained to convergence, 9 arms x 5 seeds, ~3 h on 2 CPU cores:
      $LICO_TUNE run search_spaces/study_converged.yaml   (where it stands: docs/study/README.md)
  One training run without Ray (the quick start's base trial):
      make train          (or: $LICO_TUNE train $SPEC)
NEXT
