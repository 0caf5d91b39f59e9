#!/usr/bin/env bash
# Reference learning curves (issue 18, item 5): the LLM agent with LLMPPOConfig's recipe beside
# Symbolic-PPO and DRRN at equal frames on the main job's level, 3 seeds each, then the table
# "expected success at N frames" (mean ± sd over seeds, training episodes per bin) and the figure.
#
#     [OUT=runs/reference] [FRAMES=20480] [SEEDS="1 2 3"] [NPROC=2] bash examples/reference_curves.sh
#
# An hour-scale CPU budget: each LLM run of 20,480 frames takes about 70 minutes on 2 cores
# (2 torchrun ranks), Symbolic-PPO and DRRN a few minutes each.
set -euo pipefail
OUT=${OUT:-runs/reference}
FRAMES=${FRAMES:-20480}
SEEDS=${SEEDS:-"1 2 3"}
NPROC=${NPROC:-2}
ENV_ID=${ENV_ID:-BabyAI-Text-PickUpS5N2-v0}
PY=${PY:-.venv/bin/python}
BIN=$((FRAMES / 10))

for seed in $SEEDS; do
    if [ "$NPROC" -gt 1 ]; then
        OMP_NUM_THREADS=1 $PY -m torch.distributed.run --standalone --nproc_per_node="$NPROC" \
            examples/train_llm_ppo.py --env-id "$ENV_ID" --total-timesteps "$FRAMES" --torch-threads 1 \
            --run-dir "$OUT" --save-model --seed "$seed" --grounding-every 8
    else
        $PY examples/train_llm_ppo.py --env-id "$ENV_ID" --total-timesteps "$FRAMES" --run-dir "$OUT" \
            --save-model --seed "$seed" --grounding-every 8
    fi
    # rollouts of the LLM's size (8 x 16): the same number of updates per frame
    $PY examples/train_symbolic_ppo.py --env-id "$ENV_ID" --total-timesteps "$FRAMES" --n-envs 8 --n-steps 16 \
        --batch-size 64 --run-dir "$OUT" --save-model --seed "$seed"
    $PY examples/train_drrn.py --env-id "$ENV_ID" --total-timesteps "$FRAMES" --learning-starts 256 \
        --target-update-interval 256 --run-dir "$OUT" --save-model --seed "$seed"
done

$PY -m glam_experiments.curves "$OUT"/*__* --bin "$BIN" --window 50 --png "$OUT/curves.png" | tee "$OUT/curves.md"
