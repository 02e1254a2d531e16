#!/usr/bin/env bash
# Publish the converged study into docs/study/: copy each finished experiment directory (without the
# model weights and the per-trial explain figures, which no report reads), regenerate its reports with
# `lico-tune report`, and draw the figures. Run from anywhere; needs the project's venv.
#
#   docs/study/publish.sh /work/study-results/study-converged_2026-12-04 [/work/study-results/study-converged-placed_...]
#   docs/study/publish.sh --regenerate # rewrite every report from docs/study/results (a report format changed)
#   docs/study/publish.sh --check      # regenerate every report from docs/study/results and diff it
set -euo pipefail
cd "$(dirname "$0")/../.."
LICO_TUNE=${LICO_TUNE:-lico-tune}
PYTHON=${PYTHON:-python}
ROOT=docs/study/results
# ---- The analysis, declared 2026-12-04 before any result of the converged study was read ----------
# Confirmatory (Fashion-MNIST): raw test accuracy of six arms against CE, one Holm family of these 6
# contrasts, TOST equivalence margin 1 accuracy point ("no difference larger than 1 point").
confirmatory() {
  "$LICO_TUNE" report "$ROOT" --experiment "$1" --no-catalog --baseline ce \
    --arm mm_default --arm mm_stabilised --arm ot_only --arm lico --arm lico_alive --arm lico_released \
    --metric test/acc --margin test/acc=1.0
}
# Exploratory (labelled so in the README): every arm against CE and against the default LICO, the EMA
# accuracy and Grad-CAM's faithfulness and localisation scores; saliency is read only beside accuracy
# (an arm that lost accuracy explains a different model), and compared between arms whose accuracy is
# equivalent within the margin.
exploratory() {
  "$LICO_TUNE" report "$ROOT" --experiment "$1" --no-catalog --baseline ce --baseline lico \
    --metric test/acc --metric test/acc_ema --metric saliency/gradcam/overall \
    --metric saliency/gradcam/insertion --metric saliency/gradcam/deletion --metric saliency/gradcam/pointing \
    --metric saliency/gradcam/ses --metric health/dose0/mm --metric health/text_cos_between \
    --margin test/acc=1.0 --margin test/acc_ema=1.0 --margin saliency/gradcam/overall=0.02
}
# placed_fmnist (exploratory): the same against CE, with the pointing game and energy on the item's box.
placed() {
  "$LICO_TUNE" report "$ROOT" --experiment "$1" --no-catalog --baseline ce \
    --metric test/acc --metric test/acc_ema --metric saliency/gradcam/overall \
    --metric saliency/gradcam/pointing_mask --metric saliency/gradcam/energy_mask \
    --metric health/text_cos_between --margin test/acc=1.0 --margin saliency/gradcam/pointing_mask=0.05
}
reports() {  # experiment name -> report file: contents
  case "$1" in
    study-converged-placed_*) placed "$1" ;;
    study-converged_*) confirmatory "$1"; echo; echo "# Exploratory"; echo; exploratory "$1" ;;
  esac
}
if [ "${1:-}" = --regenerate ]; then   # after a change of the report's format: rewrite them from the results
  for dir in "$ROOT"/study-converged*; do
    name=$(basename "$dir")
    reports "$name" > "docs/study/report_$name.md" && echo "docs/study/report_$name.md: regenerated"
  done
  exit
fi
if [ "${1:-}" = --check ]; then
  for dir in "$ROOT"/study-converged*; do
    name=$(basename "$dir")
    diff <(reports "$name") "docs/study/report_$name.md" && echo "docs/study/report_$name.md: regenerated identically"
  done
  exit
fi
[ $# -ge 1 ] || { echo "usage: docs/study/publish.sh EXPERIMENT_DIR... | --check" >&2; exit 2; }
mkdir -p "$ROOT"
for src in "$@"; do
  name=$(basename "$src")
  rm -rf "${ROOT:?}/$name"
  cp -r "$src" "$ROOT/$name"
  find "$ROOT/$name" \( -name '*.pt' -o -name explain.png -o -name curves.npz -o -name tuner.pkl \) -delete
  reports "$name" > "docs/study/report_$name.md"
  # the means figure shows the confirmatory metric (raw test accuracy) and Grad-CAM's scores beside it
  "$PYTHON" scripts/study_figures.py "$ROOT" "$name" "docs/study/figures/$name" --metric test/acc \
    --metric saliency/gradcam/overall --metric saliency/gradcam/pointing_mask --metric saliency/gradcam/energy_mask
  du -sh "$ROOT/$name"
done
