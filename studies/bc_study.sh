#!/usr/bin/env bash
# Learning from the bot (docs/studies/learning_from_the_bot.md): behaviour cloning on 100 and 1,000 of the
# bot's demonstrations, PPO alone, and cloning then PPO, on the main job's level, seeds 1 and 2,
# two runs at a time with one thread each (the 2-core machine).  Every arm is measured on the
# main job's 100 evaluation episodes and 300 bot states (seed 1000): its zero-shot and random
# figures are on the same episodes.  A cloning-then-PPO arm is also measured after cloning,
# before PPO: that is the "cloning alone" figure.  Then DRRN with and without the 1,000
# demonstrations in its replay buffer, 3 seeds, and the tables.
#
#     [OUT=runs/bc] [FRAMES=1024] [DRRN_FRAMES=10240] bash studies/bc_study.sh
#
# About 3 hours on 2 cores: the LLM arms took 2.5 hours here (a test run beside them for half
# of it; the bc1000v0 pair 42 minutes; cloning runs at ~4 demonstration steps/s on one thread in its first epoch, PPO at
# ~2 frames/s, each 100-episode evaluation 5-10 minutes), each DRRN pair 25 minutes with other
# work beside it.
set -euo pipefail
PY=${PY:-.venv/bin/python}
OUT=${OUT:-runs/bc}
FRAMES=${FRAMES:-1024}
DRRN_FRAMES=${DRRN_FRAMES:-10240}
ENV_ID=BabyAI-Text-PickUpS5N2-v0
DATASET=babyai-text/PickUpS5N2/bot-v0
mkdir -p "$OUT"
[ -d "${MINARI_DATASETS_PATH:-$HOME/.minari/datasets}/$DATASET" ] ||
    $PY -m glam_experiments.demonstrations --env-id "$ENV_ID" --episodes 1000 --seed 0

STUDY="run --env-id $ENV_ID --episodes 100 --grounding-states 300 --eval-seed 1000 --out $OUT"
BC="--bc-dataset $DATASET --bc-learning-rate 3e-4"
FIT="--bc-value-coef 0.5"  # the value head fitted to the bot's returns, as cloning did before (PPO's vf_coef)
# each line "name seed flags...": the runs whose result is missing, two at a time
run_arms() {
    while read -r name seed flags; do  # (no trailing blank: xargs -L would join the next line)
        [ -e "$OUT/$name/seed$seed/result.json" ] || echo "$name $seed${flags:+ $flags}"
    done | OMP_NUM_THREADS=1 xargs -P 2 -L 1 sh -c \
        "name=\$0 seed=\$1; shift; $PY -m studies.recipe_study $STUDY --frames $FRAMES --name \$name \
         --seed \$seed \"\$@\" > $OUT/\$name-\$seed.log 2>&1 && tail -1 $OUT/\$name-\$seed.log"
}
{
    for seed in 1 2; do echo "bc1000_ppo $seed --arm default $BC $FIT --bc-episodes 1000 --bc-epochs 1"; done
    # the value head left unfitted while cloning (the default since): PPO's critic learns the cloned policy's values
    for seed in 1 2; do echo "bc1000v0_ppo $seed --arm default $BC --bc-episodes 1000 --bc-epochs 1 --bc-value-coef 0"; done
    for seed in 1 2; do echo "bc100_ppo $seed --arm default $BC $FIT --bc-episodes 100 --bc-epochs 5"; done
    for seed in 1 2; do echo "ppo $seed --arm default"; done
} | run_arms
# PPO at higher LM rates from the same cloned policies (bc1000v0_ppo's cloned.zip, saved by the runs above)
for arm in lm1e-4 lm3e-4; do
    for seed in 1 2; do echo "bc1000v0_$arm $seed --arm $arm --init-from $OUT/bc1000v0_ppo/seed$seed/cloned.zip"; done
done | run_arms
$PY -m studies.recipe_study report "$OUT" | tee "$OUT/report.md"

# DRRN (the reference curves' settings) with and without the demonstrations in its replay buffer
for seed in 1 2 3; do echo "$seed"; echo "$seed --demonstrations $DATASET"; done | OMP_NUM_THREADS=1 xargs -P 2 -L 1 sh -c \
    "$PY examples/train_drrn.py --env-id $ENV_ID --total-timesteps $DRRN_FRAMES --learning-starts 256 \
     --target-update-interval 256 --run-dir $OUT/drrn --save-model --seed \$0 \"\$@\" > /dev/null"
agents=$(for run in "$OUT"/drrn/*__*; do printf -- "--agent %s/model.zip " "$run"; done)
$PY -m glam_experiments.evaluate $agents --agent random --suite "$ENV_ID" --episodes 100 --envs 10 --seed 1000 \
    --out "$OUT/drrn_evaluation" | tee "$OUT/drrn_evaluation.md"
