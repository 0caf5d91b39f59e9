"""Zero-shot grounding of SmolLM2-135M under several prompt formats (the table in docs/studies/grounding.md).

    python studies/zero_shot_prompts.py [--env-id BabyAI-Text-PickUpS5N2-v0] [--states 200]

For GLAM's raw prompt, two hand-written chat prompts (SmolLM2's ``<|im_start|>`` turns; the
action list in the system turn, the goal and observation in the user turn, the action as
the assistant's answer, with or without a lead-in) and the library's chat format
(``LLMPolicy(chat_template=True)``: the tokenizer's own template), each with summed and token-normalised
action scores: bot agreement, state dependence and the mean action distribution on bot
states, and the probe prompts (:mod:`glam_experiments.diagnostics`).  Nothing is trained.
"""

from __future__ import annotations

import gymnasium as gym

from babyai_text.prompt import PromptTemplate
from glam_experiments.cli import ArgumentParser, require_at_least, run_command, summary
from glam_experiments.diagnostics import BotStates, measure, probe_observations
from llm_policy import LLMPolicy


def chat_template(answer: str, action_prefix: str) -> PromptTemplate:
    """SmolLM2's chat turns: the action list in the system turn, goal and observation in the
    user's, the action as the assistant's ``answer`` (``{action}`` at its end)."""
    return PromptTemplate(
        history=1,
        actions="<|im_start|>system\nYou are an agent in a small grid world. "
        "Your possible actions are: {actions}.<|im_end|>",
        goal="<|im_start|>user\nYour goal: {mission}.",
        observation="What you see: {sentences}.",
        action="Which action do you take?<|im_end|>\n<|im_start|>assistant\n" + answer,
        action_prefix=action_prefix,
    )


TEMPLATES = {
    "GLAM raw prompt": PromptTemplate(history=1),
    # as measured for docs/studies/grounding.md: the open slot loses its trailing newline (PromptTemplate strips
    # it), so the action follows "<|im_start|>assistant" directly; the lead-in variant keeps the newline
    "chat template": chat_template("{action}", ""),
    "chat template, lead-in": chat_template("I take the action: {action}", " "),
}
#: the library's own chat format (LLMPolicy(chat_template=True)): GLAM's lines as the tokenizer's turns
CHAT_FORMAT = "LLMPolicy(chat_template=True)"


def main(argv: list[str]) -> None:
    parser = ArgumentParser(description=summary(__doc__))
    parser.add_argument("--env-id", default="BabyAI-Text-PickUpS5N2-v0")
    parser.add_argument("--model", default="SmolLM2-135M-Instruct")
    parser.add_argument("--states", type=int, default=200)
    parser.add_argument("--seed", type=int, default=5000)
    args = parser.parse_args(argv)
    require_at_least({"states": args.states})
    states = BotStates.collect(args.env_id, args.states, seed=args.seed)
    probes = probe_observations(args.env_id)
    env = gym.make(args.env_id)
    names = env.unwrapped.action_names
    print("| prompt | scores | bot agreement (best constant) | state dependence | mean distribution |")
    print("|---|---|---|---|---|")
    for name, template in [*TEMPLATES.items(), (CHAT_FORMAT, PromptTemplate(history=1))]:
        for normalization in ("sum", "token"):
            policy = LLMPolicy(
                env.observation_space,
                env.action_space,
                lambda _: 0.0,
                model=args.model,
                finetune="frozen",
                prompt_template=template,
                chat_template=name == CHAT_FORMAT,
                normalization=normalization,
            )
            g = measure(policy, states, probes=probes)
            mean = ", ".join(f"{n} {p:.2f}" for n, p in zip(names, g.mean_probabilities, strict=True))
            print(
                f"| {name} | {normalization} | {g.bot_agreement:.2f} ({g.constant_agreement:.2f}) | "
                f"{g.state_dependence:.2f} | {mean} |"
            )


if __name__ == "__main__":
    run_command(main)
