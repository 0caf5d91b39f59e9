#!/usr/bin/env bash
# A main job's GiGPO stage again with other seeds
# (docs/studies/group_advantages.md#the-main-job-with-a-weak-clone-and-gigpo-rls-gain-over-three-seeds):
# from the cloned agent of a run of
#     python -m studies.main_job --bc-episodes 100 --algo gigpo --group-size 4 --lm-learning-rate 1e-4 \
#         --ent-coef 0 --total-timesteps 6000 --out JOB
# (cloning is deterministic, so every seed starts from the agent that job reinforced), GiGPO with that job's
# flags (groups of 4, the LM's top two blocks at 1e-4, no entropy bonus; 8 envs per rank over 2 torchrun ranks)
# for FRAMES frames per seed of SEEDS, then each trained agent on the job's 200 evaluation episodes (seed 1000)
# and 300 bot states, as the job measures.
#
#     JOB=<that job's --out> [OUT=runs/main_seeds] [FRAMES=6000] [SEEDS="2 3"] bash studies/main_job_seeds.sh
#
# About 14 minutes per seed over both cores, and 5 per evaluation (two at a time, one thread each).
set -euo pipefail
PY=${PY:-.venv/bin/python}
JOB=${JOB:?JOB: the results folder of the main job whose cloned agent to start from}
OUT=${OUT:-runs/main_seeds}
FRAMES=${FRAMES:-6000}
SEEDS=${SEEDS:-2 3}
ENV_ID=BabyAI-Text-PickUpS5N2-v0
CLONED=$(ls "$JOB"/training/*/cloned.zip)
mkdir -p "$OUT"
for seed in $SEEDS; do
    [ -n "$(ls "$OUT/seed$seed"/*/model.zip 2>/dev/null)" ] && continue
    OMP_NUM_THREADS=1 $PY -m torch.distributed.run --standalone --nproc_per_node=2 examples/train_llm_ppo.py \
        --algo gigpo --group-size 4 --n-envs 8 --lm-learning-rate 1e-4 --ent-coef 0 --init-from "$CLONED" \
        --total-timesteps "$FRAMES" --env-id "$ENV_ID" --seed "$seed" --run-dir "$OUT/seed$seed" --save-model \
        --torch-threads 1 --grounding-every 5 --grounding-states 64 > "$OUT/seed$seed.log" 2>&1
done
for seed in $SEEDS; do
    [ -e "$OUT/seed$seed/eval/evaluation.json" ] || echo "$seed"
done | xargs -P 2 -I{} sh -c "OMP_NUM_THREADS=1 $PY -m glam_experiments.evaluate --agent \$(ls $OUT/seed{}/*/model.zip) \
    --suite $ENV_ID --episodes 200 --envs 10 --seed 1000 --grounding-states 300 --out $OUT/seed{}/eval --overwrite \
    > $OUT/seed{}/eval.log 2>&1"
for seed in $SEEDS; do  # the level's success and grounding rows of the evaluation's own table
    echo "seed $seed: $(grep -h '^| (a)' "$OUT/seed$seed/eval/evaluation.md" | tr '\n' ' ')"
done
