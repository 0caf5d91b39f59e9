#!/usr/bin/env bash
# Reference learning curves: the LLM agent with the main job's recipe beside
# Symbolic-PPO and DRRN at equal PPO frames on the main job's level, 3 seeds each, then the table
# "expected success at N frames" (mean ± sd over seeds, training episodes per bin) and the figure;
# then every final agent, the random agent and the zero-shot model on the main job's evaluation
# episodes (EVAL_EPISODES seeded from 1000, grounding on 200 bot states), also per group of seeds.
#
#     [OUT=runs/reference] [FRAMES=20480] [SEEDS="1 2 3"] [NPROC=2] [BC_EPISODES=1000] bash studies/reference_curves.sh
#
# (MODEL: the LM, SmolLM2-135M-Instruct by default; LLM_FLAGS: more flags of both LLM scripts, e.g.
# a smaller rollout for a trial; EVAL_EPISODES: 100.)
#
# LOGS=<folder>: each seed's runs, once finished and evaluated, are also copied there without
# their weights (model.zip, checkpoints/: logs, flags, grounding.csv, the evaluation: under 1 MB
# per seed), and the table and figure are made from every seed found there (the random and zero-shot
# references, evaluated once, serve every seed).  Seeds can so be run on
# different machines or sessions (SEEDS=2 on one, SEEDS=3 on another, the same LOGS folder carried
# over, e.g. committed), and a user's own runs compared with ours: docs/results/reference_curves
# holds our seeds' logs.
#
# The LLM agent: the main job's recipe (studies.main_job): the bot's first BC_EPISODES
# episodes of the level cloned (one epoch, the LM at 3e-4, the value head not fitted), then PPO
# with LLMPPOConfig's defaults for FRAMES frames from the cloned policy; BC_EPISODES=0: PPO from
# the pretrained model alone.  The baselines get no demonstrations: the curves' x axis counts
# environment frames of RL, and the demonstrations are the LLM agent's head start, stated beside.
#
# An hour-scale CPU budget per seed, measured on an idle 2-core machine: the LLM's 20,480 PPO
# frames 66 minutes (2 torchrun ranks), its cloning 7, Symbolic-PPO 4, DRRN 12, the evaluation of
# the seed's four agents 6 (about 1 h 35 min a seed); the references' evaluation 10.  The script
# can be stopped and run again with the same variables: finished runs are kept, an LLM run
# cut short continues from its last checkpoint (--resume), a cloning cut short starts again, and
# an evaluation older than one of its agents is made again.
set -euo pipefail
OUT=${OUT:-runs/reference}
FRAMES=${FRAMES:-20480}
SEEDS=${SEEDS:-"1 2 3"}
NPROC=${NPROC:-2}
BC_EPISODES=${BC_EPISODES:-1000}
ENV_ID=${ENV_ID:-BabyAI-Text-PickUpS5N2-v0}
MODEL=${MODEL:-SmolLM2-135M-Instruct}
EVAL_EPISODES=${EVAL_EPISODES:-100}
EVAL_SEED=1000  # the main job's: above every cloned episode's seed (0..BC_EPISODES-1)
PY=${PY:-.venv/bin/python}
BIN=$((FRAMES / 10))
read -r -a LLM <<< "--model $MODEL ${LLM_FLAGS:-}"
# The main job's rollout and minibatch whatever NPROC (it only shares the work out): 16 envs x 16
# steps per update (2 ranks x 8), minibatches of 128 (2 x 64), 4 epochs.  Symbolic-PPO gets the same.
ENVS=16
MINIBATCH=128
if [ $((ENVS % NPROC)) != 0 ]; then
    echo "NPROC=$NPROC must divide the $ENVS envs of the main job's rollout (1, 2, 4, 8 or 16)" >&2
    exit 2
fi
PER_RANK=(--n-envs $((ENVS / NPROC)) --batch-size $((MINIBATCH / NPROC)))

if [ "$NPROC" -gt 1 ]; then
    TRAIN=(env OMP_NUM_THREADS=1 "$PY" -m torch.distributed.run --standalone --nproc_per_node="$NPROC")
    THREADS=(--torch-threads 1)
else
    TRAIN=("$PY")
    THREADS=()
fi
# the run of this kind and seed under a folder: its path, or nothing
find_run() { find "$1" -maxdepth 1 -type d -name "${ENV_ID}__$2__$3__*" 2>/dev/null | head -1; }
# true if that run finished (it saved its model); a run cut short is removed
done_run() {
    local run
    run=$(find_run "$@")
    [ -n "$run" ] && [ -e "$run/model.zip" ] && return 0
    [ -z "$run" ] || rm -rf "$run"
    return 1
}
# keep_logs <run> <folder>: the run, without its weights, into the folder (replacing another run of
# the same kind and seed there, e.g. one trained again since)
keep_logs() {
    local run=$1 dest=$2 name kind
    name=$(basename "$run")
    kind=${name%__*}
    mkdir -p "$dest"
    find "$dest" -maxdepth 1 -type d -name "${kind}__*" ! -name "$name" -exec rm -rf {} +
    rm -rf "${dest:?}/$name"
    tar -C "$(dirname "$run")" --exclude=model.zip --exclude=checkpoints -cf - "$name" | tar -C "$dest" -xf -
}
# evaluate <folder> <agent>...: the agents on the evaluation episodes, unless a newer evaluation is there
evaluate() {
    local out=$1 agent stale=1
    shift
    if [ -e "$out/evaluation.md" ]; then
        stale=0
        for agent in "$@"; do [ ! "$agent" -nt "$out/evaluation.md" ] || stale=1; done
    fi
    [ "$stale" = 1 ] || return 0
    local agents=()
    for agent in "$@"; do agents+=(--agent "$agent"); done
    # the zero-shot model reads the trained LLM agent's prompt (LLMPPOConfig's one observation)
    "$PY" -m glam_experiments.evaluate "${agents[@]}" --suite "$ENV_ID" --episodes "$EVAL_EPISODES" \
        --seed "$EVAL_SEED" --grounding-states "${GROUNDING_STATES:-200}" --prompt-history 1 --out "$out" --overwrite
}

if [ "$BC_EPISODES" -gt 0 ]; then  # recorded if missing, with seeds 0..N-1: below every evaluation seed
    DATASET=$("$PY" -c "from glam_experiments.demonstrations import bot_demonstrations as b
print(b('$ENV_ID', $BC_EPISODES))")
fi
for seed in $SEEDS; do
    init=()
    cloned=()
    if [ "$BC_EPISODES" -gt 0 ]; then
        clones=$OUT/cloned/seed$seed
        if ! done_run "$clones" bc_llm "$seed"; then
            "${TRAIN[@]}" examples/train_bc.py --dataset-id "$DATASET" --env-id "$ENV_ID" --episodes "$BC_EPISODES" \
                --epochs 1 --bc-learning-rate 3e-4 --bc-value-coef 0 --run-dir "$clones" --save-model \
                --seed "$seed" "${THREADS[@]}" "${LLM[@]}"
        fi
        cloned=("$(find_run "$clones" bc_llm "$seed")/model.zip")
        init=(--init-from "${cloned[0]}")
    fi
    run=$(find_run "$OUT" llm_ppo "$seed")
    resume=()  # a run cut short after a checkpoint continues from it
    [ -z "$run" ] || [ -e "$run/model.zip" ] || [ ! -e "$run/checkpoints/latest" ] || resume=(--resume "$run")
    if [ ${#resume[@]} -gt 0 ] || ! done_run "$OUT" llm_ppo "$seed"; then
        "${TRAIN[@]}" examples/train_llm_ppo.py --env-id "$ENV_ID" --total-timesteps "$FRAMES" --run-dir "$OUT" \
            --save-model --seed "$seed" --grounding-every 8 --checkpoint-every 8 "${resume[@]}" "${init[@]}" \
            "${PER_RANK[@]}" "${THREADS[@]}" "${LLM[@]}"
    fi
    # the LLM agent's rollouts and minibatches: the same updates per frame
    done_run "$OUT" symbolic_recurrent_ppo "$seed" || "$PY" examples/train_symbolic_ppo.py --env-id "$ENV_ID" \
        --total-timesteps "$FRAMES" --n-envs "$ENVS" --n-steps 16 --batch-size "$MINIBATCH" --run-dir "$OUT" \
        --save-model --seed "$seed"
    done_run "$OUT" drrn "$seed" || "$PY" examples/train_drrn.py --env-id "$ENV_ID" --total-timesteps "$FRAMES" \
        --learning-starts 256 --target-update-interval 256 --run-dir "$OUT" --save-model --seed "$seed"
    # the cloned policy too, if any: what PPO's frames added to it
    evaluate "$OUT/evaluation/seed$seed" "${cloned[@]}" "$(find_run "$OUT" llm_ppo "$seed")/model.zip" \
        "$(find_run "$OUT" symbolic_recurrent_ppo "$seed")/model.zip" "$(find_run "$OUT" drrn "$seed")/model.zip"
    if [ -n "${LOGS:-}" ]; then
        [ "$BC_EPISODES" = 0 ] || keep_logs "$(find_run "$clones" bc_llm "$seed")" "$LOGS/cloned/seed$seed"
        for kind in llm_ppo symbolic_recurrent_ppo drrn; do keep_logs "$(find_run "$OUT" "$kind" "$seed")" "$LOGS"; done
        keep_logs "$OUT/evaluation/seed$seed" "$LOGS/evaluation"
    fi
done
TABLE=$OUT
if [ -n "${LOGS:-}" ]; then  # the references do not depend on the seeds: one evaluation for all
    if [ ! -e "$LOGS/evaluation/references/evaluation.md" ]; then
        evaluate "$OUT/evaluation/references" random "$MODEL"
        keep_logs "$OUT/evaluation/references" "$LOGS/evaluation"
    fi
    TABLE=$LOGS
else
    evaluate "$OUT/evaluation/references" random "$MODEL"
fi

"$PY" -m glam_experiments.curves "$TABLE"/*__* --bin "$BIN" --window 50 --png "$TABLE/curves.png" \
    --evaluation "$TABLE"/evaluation/*/evaluation.csv | tee "$TABLE/curves.md"
