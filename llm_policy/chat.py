"""Prompts in a model's own chat format: ``LLMPolicy(chat_template=True)``.

The conversation of :meth:`babyai_text.PromptTemplate.messages` (the action list as the
system turn, the goal and observations as user turns, past actions as the assistant's
answers) goes through the tokenizer's chat template with the assistant's turn opened
(``add_generation_prompt=True``), and each action is scored as the assistant's answer.
What a template writes between the opened turn and an answer is found once, by rendering
a probe conversation with and without an answer: nothing after ChatML's
``<|im_start|>assistant\\n`` or Llama-3's header, a space after Llama-2's ``[/INST]``.
A template that refuses a system turn (Gemma's) gets the action list at the top of the
first user turn.  The rendered text holds every special token the model reads (a template
writes its own beginning-of-sequence token), so it is tokenized as Hugging Face's
``apply_chat_template(..., tokenize=True)`` does: with no tokens added around it.
"""

from __future__ import annotations

from typing import Any

from jinja2.exceptions import TemplateError
from transformers import PreTrainedTokenizerBase

Messages = list[dict[str, str]]

_PROBE: Messages = [
    {"role": "system", "content": "Possible action of the agent: turn left, go forward"},
    {"role": "user", "content": "Goal of the agent: go to the red ball\nObservation 0: You see a wall"},
]
_PROBE_ANSWER = "go forward"


class ChatTemplateError(ValueError):
    """The tokenizer has no chat template, or one whose answers cannot be located."""


class ChatFormat:
    """Renders conversations with a tokenizer's chat template, the assistant's turn opened.

    :param tokenizer: a tokenizer with a ``chat_template``.
    :param model_name: named in errors.
    :raises ChatTemplateError: naming the problem and the fix.
    """

    def __init__(self, tokenizer: PreTrainedTokenizerBase, model_name: str = "") -> None:
        self.tokenizer = tokenizer
        self.model_name = model_name or getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__
        if not getattr(tokenizer, "chat_template", None):
            raise ChatTemplateError(
                f"chat_template=True but the tokenizer of {self.model_name!r} has no chat template "
                "(tokenizer.chat_template is empty): use chat_template=False (GLAM's plain prompt), a chat or "
                "instruct model, or set tokenizer.chat_template before saving the model's directory"
            )
        self.system_turn = True
        try:
            self._render(_PROBE, add_generation_prompt=True)
        except TemplateError:
            self.system_turn = False  # e.g. Gemma's "System role not supported"
        try:
            self.answer_prefix = self._find_answer_prefix()
        except TemplateError as err:
            raise ChatTemplateError(
                f"the chat template of {self.model_name!r} refuses a conversation of system, user and assistant "
                f"turns ({err}): use chat_template=False (GLAM's plain prompt)"
            ) from None

    def _render(self, messages: Messages, add_generation_prompt: bool) -> str:
        if not self.system_turn and messages and messages[0]["role"] == "system":
            system, first, *rest = messages
            merged = {"role": first["role"], "content": system["content"] + "\n" + first["content"]}
            messages = [merged, *rest]
        text: Any = self.tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=add_generation_prompt
        )
        return str(text)

    def _find_answer_prefix(self) -> str:
        opened = self._render(_PROBE, add_generation_prompt=True)
        answered = self._render([*_PROBE, {"role": "assistant", "content": _PROBE_ANSWER}], add_generation_prompt=False)
        start = answered.find(_PROBE_ANSWER, len(opened)) if answered.startswith(opened) else -1
        if start < 0:
            raise ChatTemplateError(
                f"the chat template of {self.model_name!r} does not write an assistant's answer after the text it "
                "renders for an opened assistant turn (add_generation_prompt=True), so where an action starts "
                "cannot be located: use chat_template=False, or a prompt_template whose lines carry the model's "
                "turn markers"
            )
        return answered[len(opened) : start]

    def prompt(self, messages: Messages) -> str:
        """The text the model reads before the assistant's answer to ``messages``."""
        return self._render(messages, add_generation_prompt=True)

    def candidates(self, action_names: tuple[str, ...] | list[str]) -> list[str]:
        """Each action as the template writes an answer after :meth:`prompt`."""
        return [self.answer_prefix + name for name in action_names]
