#!/usr/bin/env bash
# How RL's own gain grows with frames in the main job's setting (docs/studies/group_advantages.md#gigpo-gain-against-frames-it-levels-off-at-about-01-short-of-separating-intervals):
#   1. the main job with a weak clone (100 bot episodes, BC_EPOCHS epochs, over its 2 torchrun ranks) and 4,000
#      GiGPO frames in groups of JOB_GROUP: its before-RL agent (cloned.zip) is the start of step 2, and its
#      report measures that agent, the job's RL agent, zero-shot and random on the job's 200 evaluation episodes;
#   2. from that cloned agent, GiGPO in groups of 4 (two groups per rank, seed SEED) to FRAMES frames, a
#      checkpoint every EVERY rollouts (13: about 4,000 frames), every checkpoint kept;
#   3. each checkpoint on the same 200 evaluation episodes (seed 1000) and 200 bot states.
#
#     [OUT=runs/frames] [FRAMES=12000] [BC_EPOCHS=2] [JOB_GROUP=8] [SEED=2] [EVERY=13] \
#         bash studies/gigpo_frames_study.sh
#
# docs/studies/group_advantages.md's two runs: the defaults (a clone of 2 epochs), and OUT=runs/frames_e1 FRAMES=8000
# BC_EPOCHS=1 JOB_GROUP=4 SEED=1 EVERY=6 (a clone of 1 epoch, the job's RL stage in groups of 4).
#
# About 25 minutes for step 1, 36 for step 2 (5.5 frames/s over both cores), 4 per checkpoint evaluated.
set -euo pipefail
PY=${PY:-.venv/bin/python}
OUT=${OUT:-runs/frames}
FRAMES=${FRAMES:-12000}
BC_EPOCHS=${BC_EPOCHS:-2}
JOB_GROUP=${JOB_GROUP:-8}
SEED=${SEED:-2}
EVERY=${EVERY:-13}
ENV_ID=BabyAI-Text-PickUpS5N2-v0
mkdir -p "$OUT/kept"
[ -e "$OUT/job/evaluation.json" ] ||
    $PY -m studies.main_job --bc-episodes 100 --bc-epochs "$BC_EPOCHS" --group-size "$JOB_GROUP" --algo gigpo --lm-learning-rate 1e-4 \
        --ent-coef 0 --total-timesteps 4000 --out "$OUT/job" > "$OUT/job.log" 2>&1
CLONED=$(ls "$OUT"/job/training/*/cloned.zip)
if [ -z "$(ls "$OUT"/long/*/model.zip 2>/dev/null)" ]; then
    # a run keeps its newest two checkpoints: copy each one as it lands (a checkpoint folder appears complete)
    (while sleep 10; do
        for c in "$OUT"/long/*/checkpoints/frames-*; do
            [ -d "$c" ] && [ ! -e "$OUT/kept/$(basename "$c")" ] && cp -r "$c" "$OUT/kept/"
        done
    done) &
    keeper=$!
    trap 'kill $keeper' EXIT
    OMP_NUM_THREADS=1 $PY -m torch.distributed.run --standalone --nproc_per_node=2 examples/train_llm_ppo.py \
        --algo gigpo --group-size 4 --n-envs 8 --lm-learning-rate 1e-4 --ent-coef 0 --init-from "$CLONED" \
        --total-timesteps "$FRAMES" --checkpoint-every "$EVERY" --env-id "$ENV_ID" --seed "$SEED" --run-dir "$OUT/long" \
        --save-model --torch-threads 1 --grounding-every 5 --grounding-states 64 > "$OUT/long.log" 2>&1
    sleep 15  # the keeper's last pass
fi
for c in "$OUT"/kept/frames-*; do
    [ -e "$c/eval/evaluation.json" ] && continue
    echo "$c"
done | xargs -P 2 -I{} env OMP_NUM_THREADS=1 $PY -m glam_experiments.evaluate --agent {}/model.zip \
    --suite "$ENV_ID" --episodes 200 --envs 10 --seed 1000 --grounding-states 200 --out {}/eval --overwrite
for c in "$OUT"/kept/frames-*; do  # the level's success and grounding rows of the evaluation's own table
    echo "$(basename "$c"): $(grep -h '^| (a)' "$c/eval/evaluation.md" | tr '\n' ' ')"
done
