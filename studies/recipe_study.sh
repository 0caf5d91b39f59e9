#!/usr/bin/env bash
# The recipe study of docs/studies/grounding.md: arms of studies.recipe_study.ARMS with seeds 1
# and 2, 1,536 frames of BabyAI-Text-PickUpS5N2-v0 each, two runs at a time with one thread
# each (the 2-core machine; an arm's two seeds run together), then the table.
#   studies/recipe_study.sh [arm ...]      (default: all arms)
set -euo pipefail
PY=${PY:-.venv/bin/python}
OUT=${OUT:-runs/recipes}
ARMS=${*:-$($PY -c "from studies.recipe_study import ARMS; print(' '.join(ARMS))")}
mkdir -p "$OUT"
for arm in $ARMS; do for seed in 1 2; do
  [ -e "$OUT/$arm/seed$seed/result.json" ] || echo "$arm $seed"
done; done | OMP_NUM_THREADS=1 xargs -P 2 -L 1 sh -c \
  "$PY -m studies.recipe_study run --arm \$0 --seed \$1 --out $OUT > $OUT/\$0-\$1.log 2>&1 && tail -1 $OUT/\$0-\$1.log"
$PY -m studies.recipe_study report "$OUT" | tee "$OUT/report.md"
