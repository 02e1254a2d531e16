#!/usr/bin/env bash
# Publish the language study (issue 32) into docs/study/language/: copy each finished experiment
# (without weights), regenerate its reports and figures. Run from anywhere; needs the project's venv.
#
#   docs/study/language/publish.sh /work/study-results/study-language_<stamp> [/work/study-results/study-language-placed_<stamp>]
#   docs/study/language/publish.sh --check      # regenerate every report from docs/study/language/results and diff it
set -euo pipefail
cd "$(dirname "$0")/../../.."
LICO_TUNE=${LICO_TUNE:-lico-tune}
PYTHON=${PYTHON:-python}
HERE=docs/study/language
ROOT=$HERE/results
# ---- The analysis, declared 2026-12-07 before any result of this study was read ----------------------
# Confirmatory: one family of six contrasts over both experiments (search_spaces/study_language.yaml's
# header), Holm over the six, TOST margins 0.5 / 1.0 accuracy points and 0.05 pointing; accuracy verdicts
# must also hold under the seeds x test-images interval. scripts/study_family.py computes it.
family() {  # part A's experiment [part B's]
  "$PYTHON" scripts/study_family.py "$ROOT" "$@"
}
# Exploratory (labelled so): every arm against ce and against mm in each label regime (one report per
# regime, so each has its own Holm family; before 2026-12-08 one report also paired arms across the
# two regimes, which the declaration's "in each label regime" never meant), EMA accuracy,
# Grad-CAM's faithfulness (insertion/deletion, LeRF), SES and the health numbers; on placed_fmnist also
# ROAD, the randomisation check and pointing/energy on the boxes. Saliency is read beside accuracy.
exploratory_a() {  # experiment, label regime's suffix ('' or _l100): its arms against its ce and mm only
  local arms=() arm
  for arm in mm_deranged mm_static ce_smooth mm_clip; do arms+=(--arm "$arm$2"); done
  "$LICO_TUNE" report "$ROOT" --experiment "$1" --no-catalog --baseline "ce$2" --baseline "mm$2" "${arms[@]}" \
    --metric test/acc --metric test/acc_ema --metric saliency/gradcam/overall \
    --metric saliency/gradcam/lerf_morf --metric saliency/gradcam/pointing --metric saliency/gradcam/ses \
    --metric health/dose0/mm --metric health/tau \
    --margin test/acc=0.5 --margin test/acc_ema=0.5 --margin saliency/gradcam/overall=0.02
}
exploratory_b() {
  "$LICO_TUNE" report "$ROOT" --experiment "$1" --no-catalog --baseline ce \
    --metric test/acc --metric test/acc_ema --metric saliency/gradcam/overall \
    --metric saliency/gradcam/road_combined --metric saliency/gradcam/sanity_full \
    --metric saliency/gradcam/pointing_mask --metric saliency/gradcam/energy_mask --metric saliency/gradcam/ses \
    --metric health/text_cos_between --margin test/acc=1.0 --margin saliency/gradcam/pointing_mask=0.05
}
reports() {  # part A's experiment, part B's (or empty) -> the report
  family "$1" ${2:+"$2"}
  echo; echo "# Exploratory: Part A (Fashion-MNIST), all labels"; echo
  exploratory_a "$1" ""
  echo; echo "# Exploratory: Part A (Fashion-MNIST), 100 labels per class"; echo
  exploratory_a "$1" _l100
  if [ -n "${2:-}" ]; then echo; echo "# Exploratory: Part B (placed_fmnist)"; echo; exploratory_b "$2"; fi
}
parts() {  # the experiments under ROOT: part A's name, then part B's if there is one
  local a b
  a=$(basename "$(ls -d "$ROOT"/study-language_* 2>/dev/null | tail -1)")
  b=$(ls -d "$ROOT"/study-language-placed_* 2>/dev/null | tail -1 || true)
  echo "$a" "${b:+$(basename "$b")}"
}
if [ "${1:-}" = --check ]; then
  read -r a b <<< "$(parts)"
  diff <(reports "$a" "${b:-}") "$HERE/report_$a.md" && echo "$HERE/report_$a.md: regenerated identically"
  exit
fi
[ $# -ge 1 ] || { echo "usage: $HERE/publish.sh EXPERIMENT_DIR... | --check" >&2; exit 2; }
mkdir -p "$ROOT"
for src in "$@"; do
  name=$(basename "$src")
  rm -rf "${ROOT:?}/$name"
  cp -r "$src" "$ROOT/$name"
  find "$ROOT/$name" \( -name '*.pt' -o -name explain.png -o -name curves.npz -o -name tuner.pkl \) -delete
  "$PYTHON" scripts/study_figures.py "$ROOT" "$name" "$HERE/figures/$name" --metric test/acc \
    --metric saliency/gradcam/overall --metric saliency/gradcam/pointing_mask
  du -sh "$ROOT/$name"
done
read -r a b <<< "$(parts)"
reports "$a" "${b:-}" > "$HERE/report_$a.md"
echo "$HERE/report_$a.md written"
