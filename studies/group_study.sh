#!/usr/bin/env bash
# Critic-free group advantages against PPO on the main job's level (docs/studies/group_advantages.md#group-advantages-study).
# For each seed, the bot's first 100 demonstrations are cloned once (5 epochs, the LM at 3e-4; kept as
# cloned/seedN, the agent before RL); from that agent each arm trains for FRAMES frames with
#   gigpo  GiGPO, 16 envs in 2 groups of 8 episodes from one start, the LM at 1e-4
#   grpo   GRPO, the same
#   ppo    PPO, LLMPPOConfig's recipe (8 envs x 16 steps, critic on detached features, rewards x20, LM 3e-5)
#   ppo_warmup  the same, its critic first fitted to the cloned policy's own returns (4 updates, the LM frozen)
# Every agent, the cloned ones and a random one are then measured on the main job's evaluation episodes
# (200, seed 1000) and 200 bot states; the report pairs each run with its seed's cloned agent.
#
#     [OUT=runs/groups] [FRAMES=2000] [SEEDS="1 2 3"] [ARMS="gigpo grpo ppo ppo_warmup"] bash studies/group_study.sh
#
# Two processes at a time with one thread each (the 2-core machine): cloning about 3 minutes per seed, an
# RL stage about 12, a 200-episode evaluation about 5.
set -euo pipefail
PY=${PY:-.venv/bin/python}
OUT=${OUT:-runs/groups}
FRAMES=${FRAMES:-2000}
SEEDS=${SEEDS:-1 2 3}
ARMS=${ARMS:-gigpo grpo ppo ppo_warmup}
ENV_ID=BabyAI-Text-PickUpS5N2-v0
DATASET=babyai-text/PickUpS5N2/bot-v0
mkdir -p "$OUT"
[ -d "${MINARI_DATASETS_PATH:-$HOME/.minari/datasets}/$DATASET" ] ||
    $PY -m glam_experiments.demonstrations --env-id "$ENV_ID" --episodes 1000 --seed 0

flags() {  # the RL stage's flags of an arm
    case $1 in
        gigpo | grpo) echo "--algo $1 --n-envs 16 --group-size 8 --lm-learning-rate 1e-4" ;;
        ppo) echo "--algo ppo" ;;
        ppo_warmup) echo "--algo ppo --critic-warmup 4" ;;
        *) echo "unknown arm $1" >&2; exit 2 ;;
    esac
}
export PY OUT FRAMES ENV_ID DATASET
clone() {  # seed
    [ -n "$(ls "$OUT/cloned/seed$1"/*/model.zip 2>/dev/null)" ] && return
    OMP_NUM_THREADS=1 $PY examples/train_bc.py --dataset-id "$DATASET" --env-id "$ENV_ID" --episodes 100 \
        --epochs 5 --bc-learning-rate 3e-4 --bc-value-coef 0 --seed "$1" --run-dir "$OUT/cloned/seed$1" \
        --save-model --torch-threads 1 > "$OUT/cloned-seed$1.log" 2>&1
}
train() {  # arm seed
    [ -n "$(ls "$OUT/$1/seed$2"/*/model.zip 2>/dev/null)" ] && return
    OMP_NUM_THREADS=1 $PY examples/train_llm_ppo.py --env-id "$ENV_ID" --init-from "$(ls "$OUT/cloned/seed$2"/*/model.zip)" \
        --total-timesteps "$FRAMES" $(flags "$1") --seed "$2" --run-dir "$OUT/$1/seed$2" --save-model \
        --torch-threads 1 --grounding-every 3 --grounding-states 64 > "$OUT/$1-seed$2.log" 2>&1
}
measure() {  # agent.zip or random, and its evaluation folder
    [ -e "$2/evaluation.json" ] && return
    OMP_NUM_THREADS=1 $PY -m glam_experiments.evaluate --agent "$1" --suite "$ENV_ID" --episodes 200 --envs 10 \
        --seed 1000 --grounding-states 200 --out "$2" --overwrite > "$2.log" 2>&1
}
export -f flags clone train measure
for seed in $SEEDS; do echo "clone $seed"; done | xargs -P 2 -L 1 bash -c '"$@"' _
for seed in $SEEDS; do for arm in $ARMS; do echo "train $arm $seed"; done; done |
    xargs -P 2 -L 1 bash -c '"$@"' _
{
    echo "measure random $OUT/random"
    for seed in $SEEDS; do
        echo "measure $(ls "$OUT/cloned/seed$seed"/*/model.zip) $OUT/cloned/seed$seed/eval"
        for arm in $ARMS; do echo "measure $(ls "$OUT/$arm/seed$seed"/*/model.zip) $OUT/$arm/seed$seed/eval"; done
    done
} | xargs -P 2 -L 1 bash -c '"$@"' _
$PY studies/group_study_report.py "$OUT"
