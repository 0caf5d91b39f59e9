"""Experiment tooling for any BabyAI-Text agent: training loggers, evaluation, learning curves,
the agents' training configurations and the main job.

Dependencies point one way: :mod:`babyai_text` (the environments) ← the agents
(:mod:`llm_policy`, :mod:`glam_baselines`) ← this package.

- :mod:`glam_experiments.configs`: each agent's training configuration, defined once.
- :mod:`glam_experiments.envs`: vectorised BabyAI-Text envs (optional reward scaling).
- :mod:`glam_experiments.callbacks`, :mod:`glam_experiments.training`: CleanRL-style logs.
- :mod:`glam_experiments.evaluate`: any agent on a suite of tests (``python -m glam_experiments.evaluate``).
- :mod:`glam_experiments.curves`: learning curves from runs (``python -m glam_experiments.curves``).
- :mod:`glam_experiments.demonstrations`: the bot's (or any agent's) episodes as a local Minari dataset
  (``python -m glam_experiments.demonstrations``).
- :mod:`glam_experiments.behaviour_cloning`: behaviour cloning of :class:`llm_policy.LLMPolicy` from such a
  dataset (``examples/train_bc.py``, optionally followed by PPO).
- :mod:`glam_experiments.cli`: what every command does with a user's mistake and with Ctrl-C.
- :mod:`glam_experiments.main_job`: the README's main job (``make main``).
"""
