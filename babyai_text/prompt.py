"""GLAM's prompt, built from a BabyAI-Text observation alone."""

from __future__ import annotations

from dataclasses import dataclass

from babyai_text.observation import TextObservation


@dataclass(frozen=True)
class PromptTemplate:
    """How an observation becomes a prompt; the defaults reproduce GLAM's.

    ::

        Possible action of the agent: turn left, turn right, go forward, pick up, drop, toggle
        Goal of the agent: go to the red ball
        Observation 0: You see a wall 2 steps forward, You see a red ball 1 step left
        Action 0: turn left
        Observation 1: ...
        Action 1: go forward
        Observation 2: ...
        Action 2:

    The candidate actions are scored as continuations of the prompt, each preceded by
    :attr:`action_prefix`.

    :param actions: line listing the actions; ``{actions}`` is replaced by the names.
    :param goal: line with ``{mission}``.
    :param observation: line with ``{index}`` and ``{sentences}``.
    :param action: line with ``{index}`` and ``{action}``; the prompt ends with this line's
        text up to ``{action}``, stripped of trailing spaces.
    :param sentence_separator: joins one step's sentences.
    :param action_separator: joins the action names in the first line.
    :param line_separator: joins lines.
    :param action_prefix: what precedes a candidate action after the prompt.
    :param history: at most this many of the most recent observations (and the actions
        between them) go into the prompt; ``None`` keeps all the environment provides
        (its ``history_length``, 3 by default).  Shorter prompts score faster.
    """

    actions: str = "Possible action of the agent: {actions}"
    goal: str = "Goal of the agent: {mission}"
    observation: str = "Observation {index}: {sentences}"
    action: str = "Action {index}: {action}"
    sentence_separator: str = ", "
    action_separator: str = ", "
    line_separator: str = "\n"
    action_prefix: str = " "
    history: int | None = None

    def __post_init__(self) -> None:
        for name, fields in (("actions", "{actions}"), ("goal", "{mission}"), ("observation", "{sentences}")):
            if fields not in getattr(self, name):
                raise ValueError(f"PromptTemplate.{name} must contain {fields}, got {getattr(self, name)!r}")
        if not self.action.rstrip().endswith("{action}"):
            raise ValueError(f"PromptTemplate.action must end with {{action}}, got {self.action!r}")
        if self.history is not None and self.history < 1:
            raise ValueError(f"PromptTemplate.history must be None or >= 1, got {self.history}")

    def render(self, obs: TextObservation) -> str:
        """The prompt for one observation (ending where the next action is to be written)."""
        lines = [
            self.actions.format(actions=self.action_separator.join(obs.action_names)),
            self.goal.format(mission=obs.mission),
        ]
        descriptions, actions = self._recent(obs)
        for index, sentences in enumerate(descriptions):
            lines.append(self.observation.format(index=index, sentences=self.sentence_separator.join(sentences)))
            if index < len(actions):
                lines.append(self.action.format(index=index, action=obs.action_names[actions[index]]))
        open_slot = self.action[: self.action.rindex("{action}")].format(index=len(descriptions) - 1)
        lines.append(open_slot.rstrip())
        return self.line_separator.join(lines)

    def messages(self, obs: TextObservation) -> list[dict[str, str]]:
        """The same content as chat turns, for a model's chat template: the action list as the
        system turn, the goal and each observation as user turns, each past action as the
        assistant's answer; the next answer is the action to score.

        ::

            system:    Possible action of the agent: turn left, turn right, go forward, ...
            user:      Goal of the agent: go to the red ball
                       Observation 0: You see a wall 2 steps forward, ...
            assistant: turn left
            user:      Observation 1: ...
        """
        names = self.action_separator.join(obs.action_names)
        turns = [{"role": "system", "content": self.actions.format(actions=names)}]
        descriptions, actions = self._recent(obs)
        for index, sentences in enumerate(descriptions):
            line = self.observation.format(index=index, sentences=self.sentence_separator.join(sentences))
            if index == 0:
                line = self.goal.format(mission=obs.mission) + self.line_separator + line
            turns.append({"role": "user", "content": line})
            if index < len(actions):
                turns.append({"role": "assistant", "content": obs.action_names[actions[index]]})
        return turns

    def _recent(self, obs: TextObservation) -> tuple[tuple[tuple[str, ...], ...], tuple[int, ...]]:
        """The observations and the actions between them that :attr:`history` keeps."""
        descriptions, actions = obs.descriptions, obs.actions
        if self.history is not None and len(descriptions) > self.history:
            descriptions = descriptions[-self.history :]
            actions = actions[len(actions) - (self.history - 1) :] if self.history > 1 else ()
        return descriptions, actions

    def candidates(self, obs: TextObservation) -> list[str]:
        """The continuation strings scored for each action, in action-index order."""
        return [self.action_prefix + name for name in obs.action_names]
