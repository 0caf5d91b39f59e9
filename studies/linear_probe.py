"""Linear probes of a language model's features: is the representation or the training the bottleneck?

    python -m studies.linear_probe --env-id BabyAI-Text-PickUpS5N2-v0 [--train-states 600 --test-states 300]

The features are what :class:`~llm_policy.LLMPolicy`'s value head reads: the final hidden
state of the prompt's last token (``--layer``: the output of an earlier block instead,
e.g. the last frozen one in ``top_k`` mode).  On states along the BabyAI bot's paths
(:class:`glam_experiments.diagnostics.BotStates`; train and test from disjoint seeds), a
multinomial logistic regression predicts the bot's action and a ridge regression its
discounted return.  If the probe's held-out accuracy is far above the best constant
action's, the frozen model already carries what the policy needs and the training recipe
is the bottleneck; if not, the features must change (more blocks, LoRA).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from glam_experiments.cli import ArgumentParser, require_at_least, run_command, summary
from glam_experiments.diagnostics import BotStates


@dataclass
class ProbeResult:
    env_id: str
    model: str
    layer: int | None
    train_states: int
    test_states: int
    action_accuracy: float
    """held-out accuracy of the bot-action probe"""
    constant_accuracy: float
    """held-out accuracy of the train set's commonest action"""
    zero_shot_agreement: float
    """held-out agreement of the untrained policy's most likely action with the bot"""
    return_r2: float
    """held-out R² of the return probe"""

    def summary(self) -> str:
        where = "final hidden state" if self.layer is None else f"output of block {self.layer}"
        return (
            f"{self.model} on {self.env_id} ({where}): bot-action probe {self.action_accuracy:.2f} held-out "
            f"(best constant {self.constant_accuracy:.2f}, zero-shot policy {self.zero_shot_agreement:.2f}); "
            f"return probe R² {self.return_r2:.2f}; {self.train_states} train / {self.test_states} test states"
        )


def features(policy: torch.nn.Module, states: BotStates, layer: int | None, batch_size: int = 32) -> np.ndarray:
    """The value-head input (``layer=None``) or block ``layer``'s output at the last prompt token."""
    from llm_policy.finetuning import transformer_blocks

    out = []
    captured: list[torch.Tensor] = []
    handle = None
    if layer is not None:
        block = transformer_blocks(policy.scorer.model)[layer]
        handle = block.register_forward_hook(lambda _m, _a, o: captured.append(o[0] if isinstance(o, tuple) else o))
    try:
        with torch.no_grad():
            for batch in states.batches(batch_size):
                tensor, _ = policy.obs_to_tensor(batch)
                captured.clear()
                hidden = policy.score(tensor, with_actions=False).hidden
                if layer is not None:
                    # value-only forwards are right-padded: the last prompt token is the last unmasked one
                    prompts = policy.prompts(tensor)[0]
                    lengths = [len(policy.scorer.tokenizer(p)["input_ids"]) for p in prompts]
                    h = captured[-1]
                    hidden = h[torch.arange(len(prompts)), torch.tensor(lengths) - 1].float()
                out.append(hidden.cpu().numpy())
    finally:
        if handle is not None:
            handle.remove()
    return np.concatenate(out)


def _standardise(train: np.ndarray, test: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    mean, std = train.mean(0), train.std(0) + 1e-6
    return torch.tensor((train - mean) / std, dtype=torch.float64), torch.tensor(
        (test - mean) / std, dtype=torch.float64
    )


def fit_logistic(x: torch.Tensor, y: np.ndarray, classes: int, l2: float = 1e-2) -> torch.Tensor:
    """Weights ``(features + 1, classes)`` of an L2-regularised multinomial logistic regression (L-BFGS)."""
    xb = torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype)], 1)
    w = torch.zeros(xb.shape[1], classes, dtype=x.dtype, requires_grad=True)
    target = torch.tensor(y)
    opt = torch.optim.LBFGS([w], max_iter=500, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(xb @ w, target) + l2 * (w[:-1] ** 2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach()


def ridge_r2(x: torch.Tensor, y: np.ndarray, x_test: torch.Tensor, y_test: np.ndarray, l2: float = 10.0) -> float:
    """Held-out R² of a ridge regression."""
    xb = torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype)], 1)
    reg = l2 * torch.eye(xb.shape[1], dtype=x.dtype)
    reg[-1, -1] = 0
    w = torch.linalg.solve(xb.T @ xb + reg, xb.T @ torch.tensor(y, dtype=x.dtype))
    pred = (torch.cat([x_test, torch.ones(len(x_test), 1, dtype=x.dtype)], 1) @ w).numpy()
    return float(1 - ((y_test - pred) ** 2).sum() / ((y_test - y_test.mean()) ** 2).sum())


def run(
    env_id: str,
    model: str = "SmolLM2-135M-Instruct",
    train_states: int = 600,
    test_states: int = 300,
    seed: int = 0,
    layer: int | None = None,
    prompt_history: int | None = 1,
) -> ProbeResult:
    """Collect states, extract features, fit and score both probes."""
    import gymnasium as gym
    from stable_baselines3.common.vec_env import DummyVecEnv

    from babyai_text.prompt import PromptTemplate
    from glam_experiments.agents import load_agent
    from glam_experiments.diagnostics import argmax_agreement, probability_fn

    train = BotStates.collect(env_id, train_states, seed=seed)
    # held-out states from later seeds than any training episode used
    test = BotStates.collect(env_id, test_states, seed=seed + train.episodes + 1000)
    env = DummyVecEnv([lambda: gym.make(env_id)])
    agent = load_agent(model, env, {"prompt_template": PromptTemplate(history=prompt_history)}, seed=seed)
    policy = getattr(agent, "policy", agent)
    x_train, x_test = _standardise(features(policy, train, layer), features(policy, test, layer))
    w = fit_logistic(x_train, train.actions, 6)
    predicted = (torch.cat([x_test, torch.ones(len(x_test), 1, dtype=x_test.dtype)], 1) @ w).argmax(1).numpy()
    common = int(np.bincount(train.actions, minlength=6).argmax())
    fn = probability_fn(policy)
    probs = np.concatenate([fn(b)[0] for b in test.batches(32)])
    return ProbeResult(
        env_id=env_id,
        model=model,
        layer=layer,
        train_states=len(train),
        test_states=len(test),
        action_accuracy=float((predicted == test.actions).mean()),
        constant_accuracy=float((test.actions == common).mean()),
        zero_shot_agreement=argmax_agreement(probs, test.actions),
        return_r2=ridge_r2(x_train, train.returns, x_test, test.returns),
    )


def main(argv: list[str] | None = None) -> None:
    run_command(_main, argv)


def _main(argv: list[str]) -> None:
    parser = ArgumentParser(description=summary(__doc__), prog="python -m studies.linear_probe")
    parser.add_argument("--env-id", default="BabyAI-Text-PickUpS5N2-v0")
    parser.add_argument("--model", default="SmolLM2-135M-Instruct")
    parser.add_argument("--train-states", type=int, default=600)
    parser.add_argument("--test-states", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--layer", type=int, action="append", help="block whose output to probe (repeatable)")
    parser.add_argument("--prompt-history", type=int, default=1)
    parser.add_argument("--out", type=Path, help="append the results to this JSON-lines file")
    args = parser.parse_args(argv)
    require_at_least(
        {"train_states": args.train_states, "test_states": args.test_states, "prompt_history": args.prompt_history}
    )
    for layer in [None, *(args.layer or [])]:
        result = run(
            args.env_id, args.model, args.train_states, args.test_states, args.seed, layer, args.prompt_history
        )
        print(result.summary())
        if args.out is not None:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            with open(args.out, "a") as f:
                f.write(json.dumps(asdict(result)) + "\n")


if __name__ == "__main__":
    main()
