"""Experiment tooling for any BabyAI-Text agent: training infrastructure, evaluation and analysis.

Dependencies point one way: :mod:`babyai_text` (the environments) ← the agents
(:mod:`llm_policy`, :mod:`glam_baselines`) and the algorithms (:mod:`glam_algorithms`) ← this
package ← the studies (``studies/``, not installed).

Training:

- :mod:`glam_experiments.configs`: each agent's training configuration, defined once (and what to
  clone first, :class:`~glam_experiments.configs.Cloning`).
- :mod:`glam_experiments.envs`: vectorised BabyAI-Text envs (optional reward scaling).
- :mod:`glam_experiments.callbacks`, :mod:`glam_experiments.training`: CleanRL-style logs.
- :mod:`glam_experiments.checkpoints`, :mod:`glam_experiments.distributed`: resumable runs, torchrun ranks.
- :mod:`glam_experiments.demonstrations`: the bot's (or any agent's) episodes as a local Minari dataset
  (``python -m glam_experiments.demonstrations``).
- :mod:`glam_experiments.cli`, :mod:`glam_experiments.quiet`: what every command does with a user's
  mistake, with Ctrl-C and with third-party noise.

Evaluation and analysis:

- :mod:`glam_experiments.agents`: any agent from its command-line name.
- :mod:`glam_experiments.evaluate`: agents on a suite of tests (``python -m glam_experiments.evaluate``).
- :mod:`glam_experiments.statistics`: Wilson and normal 99 % intervals.
- :mod:`glam_experiments.diagnostics`: is a policy grounded (bot agreement, state dependence).
- :mod:`glam_experiments.curves`: learning curves from runs (``python -m glam_experiments.curves``).
- :mod:`glam_experiments.recording`, :mod:`glam_experiments.viewer`: episodes as records, GIFs and a
  web page.
"""
