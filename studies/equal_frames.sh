#!/usr/bin/env bash
# LLM (pretrained SmolLM2-135M) vs NPAE vs Symbolic-PPO vs DRRN on BabyAI-Text-GoToS5N2-v0
# at equal frames (2,048 env-steps, the main job's budget), then each trained agent on the
# `small` generalization suite.  The figures in docs/studies/gotos5n2.md come from this script.
#
#     [OUT=runs/equal_frames] [LLM_SEEDS="1 2"] [NPAE_SEEDS="1 2"] [BASELINE_SEEDS="1 2 3"] \
#         bash studies/equal_frames.sh
#
# The LLM and NPAE runs take ~10 CPU-minutes each on 2 cores, Symbolic-PPO and DRRN ~1.
set -euo pipefail
OUT=${OUT:-runs/equal_frames}
LLM_SEEDS=${LLM_SEEDS:-"1 2"}
NPAE_SEEDS=${NPAE_SEEDS:-"1 2"}
BASELINE_SEEDS=${BASELINE_SEEDS:-"1 2 3"}
EPISODES=${EPISODES:-20}
PY=${PY:-.venv/bin/python}
FRAMES=2048
# the main job's PPO settings are train_llm_ppo.py's defaults (glam_experiments.configs.LLMPPOConfig)
LLM_ARGS=(--total-timesteps $FRAMES --run-dir "$OUT" --save-model)

for seed in $LLM_SEEDS; do
    $PY examples/train_llm_ppo.py "${LLM_ARGS[@]}" --seed "$seed"
done
for seed in $NPAE_SEEDS; do
    $PY examples/train_llm_ppo.py "${LLM_ARGS[@]}" --seed "$seed" --npae
done
for seed in $BASELINE_SEEDS; do
    # rollouts of the LLM's size (8 x 16), so that 2,048 frames are 16 updates, not 2
    $PY examples/train_symbolic_ppo.py --total-timesteps $FRAMES --n-envs 8 --n-steps 16 --batch-size 64 \
        --run-dir "$OUT" --save-model --seed "$seed"
    $PY examples/train_drrn.py --total-timesteps $FRAMES --learning-starts 256 --target-update-interval 256 \
        --run-dir "$OUT" --save-model --seed "$seed"
done

$PY -m glam_experiments.curves "$OUT"/*__* --bin 512 --window 20 --png "$OUT/curves.png" | tee "$OUT/curves.md"

# Generalization table of each trained agent (seed 1), on episodes apart from training's seeds.
agents=()
for kind in llm_ppo npae_ppo symbolic_recurrent_ppo drrn; do
    agents+=(--agent "$(ls -d "$OUT"/*__${kind}__1__* | head -n 1)/model.zip")
done
$PY -m glam_experiments.evaluate "${agents[@]}" --agent random --suite small --episodes "$EPISODES" --envs 10 \
    --seed 1000 --out "$OUT/evaluation" --overwrite  # this script's own output, regenerated on each run
