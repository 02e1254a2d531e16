#!/usr/bin/env bash
# Publish the study into docs/study/2026-12-01_32-steps/: copy the experiment directory (without the model weights
# and the per-trial explain figures, which no report reads), regenerate report.md with
# `lico-tune report`, and draw the figures. Run from anywhere; needs the project's venv.
#
#   docs/study/2026-12-01_32-steps/publish.sh /work/study-results/study-offline_2026-12-01_11-08-05
#   docs/study/2026-12-01_32-steps/publish.sh --regenerate # rewrite the reports from the results (a report format changed)
#   docs/study/2026-12-01_32-steps/publish.sh --check      # regenerate the report from docs/study/2026-12-01_32-steps/results and diff it
set -euo pipefail
cd "$(dirname "$0")/../../.."
LICO_TUNE=${LICO_TUNE:-lico-tune}
PYTHON=${PYTHON:-python}
ROOT=docs/study/2026-12-01_32-steps/results
# The analysis, declared before any study result was read (2026-12-01): both baselines, every
# metric below, one Holm family over all of it; equivalence margins in each metric's units.
report() {
  "$LICO_TUNE" report "$ROOT" --experiment "$1" --no-catalog --baseline ce --baseline lico \
    --metric test/acc_ema --metric saliency/gradcam/overall --metric saliency/gradcam/pointing_mask \
    --margin test/acc_ema=1.0 --margin saliency/gradcam/overall=0.02 --margin saliency/gradcam/pointing_mask=0.05
}
# The shortcut probe (exploratory, its own Holm family; declared 2026-12-01 before the refit run's
# results were read): does the patch change what the model relies on (patch_reliance = patched -
# shuffled accuracy, energy on the patch), and does deletion AUC on patched images reward the
# shortcut model (Bartak et al.: a lower deletion AUC although the model is no better on clean images)?
shortcut_report() {
  "$LICO_TUNE" report "$ROOT" --experiment "$1" --no-catalog --baseline ce --baseline lico \
    --metric shortcut/patch_reliance --metric saliency/gradcam/patch_energy \
    --metric saliency/gradcam/patched_deletion --metric saliency/gradcam/deletion --metric test/acc_ema
}
if [ "${1:-}" = --regenerate ]; then   # after a change of the report's format: rewrite both from the results
  name=$(basename "$(ls -d "$ROOT"/study-offline_* | tail -1)")
  report "$name" > docs/study/2026-12-01_32-steps/report.md
  shortcut_report "$name" > docs/study/2026-12-01_32-steps/report_shortcut.md
  echo "docs/study/2026-12-01_32-steps/report.md, report_shortcut.md: regenerated"
  exit
fi
if [ "${1:-}" = --check ]; then
  name=$(basename "$(ls -d "$ROOT"/study-offline_* | tail -1)")
  diff <(report "$name") docs/study/2026-12-01_32-steps/report.md && echo "docs/study/2026-12-01_32-steps/report.md: regenerated identically"
  diff <(shortcut_report "$name") docs/study/2026-12-01_32-steps/report_shortcut.md && echo "docs/study/2026-12-01_32-steps/report_shortcut.md: regenerated identically"
  exit
fi
SRC=${1:?usage: docs/study/2026-12-01_32-steps/publish.sh EXPERIMENT_DIR | --check}
name=$(basename "$SRC")
mkdir -p "$ROOT"
rm -rf "${ROOT:?}/$name"
cp -r "$SRC" "$ROOT/$name"
find "$ROOT/$name" \( -name '*.pt' -o -name explain.png -o -name curves.npz -o -name tuner.pkl \) -delete
report "$name" > docs/study/2026-12-01_32-steps/report.md
shortcut_report "$name" > docs/study/2026-12-01_32-steps/report_shortcut.md
"$PYTHON" scripts/study_figures.py "$ROOT" "$name" docs/study/2026-12-01_32-steps/figures
du -sh "$ROOT/$name"
