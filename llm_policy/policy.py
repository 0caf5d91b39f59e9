"""LLMPolicy: a Stable-Baselines3 actor-critic whose actor is a language model (GLAM)."""

from __future__ import annotations

import contextlib
import warnings
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import torch
from gymnasium import spaces
from stable_baselines3.common.distributions import CategoricalDistribution
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from stable_baselines3.common.type_aliases import PyTorchObs, Schedule
from torch import nn
from torch.nn.modules.module import _IncompatibleKeys
from torch.utils.checkpoint import checkpoint

from babyai_text import decode_batch
from babyai_text.observation import TEXT_KEYS
from babyai_text.prompt import PromptTemplate
from llm_policy.chat import ChatFormat, ChatTemplateError
from llm_policy.distributed import RankSync, multi_rank
from llm_policy.finetuning import FINETUNE_MODES, FinetuneMode, apply_finetune_mode, disable_dropout, transformer_blocks
from llm_policy.frozen_cache import DEFAULT_CACHE_BYTES
from llm_policy.models import DEFAULT_MODEL, DeviceMap, MaxMemory, check_placement, load_language_model
from llm_policy.optimizer import LR_SCALE, with_group_lr_scales
from llm_policy.saving import (
    RECORD_FORMAT,
    BaseWeightsMismatchError,
    base_record,
    frozen_weights_hash,
    mismatch_message,
    set_base_record,
)
from llm_policy.scoring import NORMALIZATIONS, STRATEGIES, ActionScorer, Normalization, Scores, Strategy
from llm_policy.value_head import RunningStandardizer

_ACTIVATIONS: dict[str, type[nn.Module]] = {"sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "relu": nn.ReLU, "gelu": nn.GELU}
VALUE_FEATURES: tuple[str, ...] = ("shared", "detached")

#: The LM's default learning rate: GLAM fine-tuned Flan-T5 with 1e-6.  SB3's 3e-4 (kept for
#: the value head) on every LM weight, with PPO's 10 epochs, wrecks a pretrained LM.
DEFAULT_LM_LEARNING_RATE = 1e-6


class _NoFeatures(BaseFeaturesExtractor):
    """Placeholder: the language model reads the observation's text itself."""

    def __init__(self, observation_space: spaces.Space) -> None:
        super().__init__(observation_space, features_dim=1)

    def forward(self, observations: PyTorchObs) -> torch.Tensor:
        raise RuntimeError("LLMPolicy does not use a features extractor")


class LLMPolicy(ActorCriticPolicy):
    """Actor-critic whose action distribution comes from a language model's scores.

    For each observation the prompt (:class:`PromptTemplate`) lists the actions, the goal
    and the recent observations and actions; each action name is scored as the prompt's
    continuation (summed log-softmax of its tokens, see :class:`ActionScorer`), and a
    softmax over the scores is the policy.  A value head (MLP) reads the LM's hidden
    state of the last prompt token (decoder-only) or of the first decoder position
    (encoder-decoder).  Everything the prompt needs comes from the observation, so the
    policy keeps no state and works with any VecEnv.

    :param observation_space: a BabyAI-Text observation space.
    :param action_space: ``Discrete(n)`` with one name per action in the observation.
    :param lr_schedule: SB3's learning-rate schedule (the value head's rate).
    :param model: built-in model name, local directory or hub id (causal or encoder-decoder).
    :param pretrained: ``False`` = same architecture, random weights (GLAM's NPAE).
    :param finetune: ``"full"``, ``"lora"``, ``"top_k"`` or ``"frozen"`` (see
        :func:`apply_finetune_mode`).
    :param top_k: blocks trained in ``"top_k"`` mode.
    :param frozen_cache_bytes: in ``"top_k"`` mode (decoder-only, ``"packed"`` scoring), the
        memory that may keep the output of the frozen lower blocks, so that PPO's update
        epochs run only the top blocks on observations seen in the rollout (1 GiB holds a
        GLAM rollout of 32 envs × 40 steps with SmolLM2-135M); 0 disables.  See
        :mod:`llm_policy.frozen_cache`.
    :param lora_kwargs: options for ``peft.LoraConfig`` in ``"lora"`` mode.
    :param normalization: ``"sum"`` (GLAM), ``"token"`` or ``"word"`` (TWOSOME).
    :param score_eos: also score the end-of-sequence token after each action.
    :param scoring_strategy: ``"packed"`` or ``"cache"`` for decoder-only models (see
        :mod:`llm_policy.scoring`).
    :param max_padding: padding allowed when batching prompts of different lengths.
    :param prompt_template: how observations become prompts (GLAM's by default).
    :param chat_template: put the prompt's content in the model's own chat format (the
        tokenizer's chat template: the action list as the system turn, goal and observations
        as user turns, each action scored as the assistant's answer; see
        :mod:`llm_policy.chat`); decoder-only models whose tokenizer has a chat template.
    :param value_head: hidden sizes of the value MLP (GLAM: 1024, 1024).
    :param value_activation: ``"sigmoid"`` (GLAM), ``"tanh"``, ``"relu"`` or ``"gelu"``.
    :param value_features: ``"shared"`` (GLAM): the value loss trains the LM's trainable
        weights too; ``"detached"`` (TWOSOME, POAD): the value head reads the same hidden
        state without gradient into the LM, so the critic cannot pull the policy's features
        (nor, under PPO's gradient-norm clip, shrink the policy's gradient).
    :param value_input_norm: standardise the value head's input per feature with running
        statistics of the update batches (:class:`~llm_policy.value_head.RunningStandardizer`):
        an LM's last hidden state is dominated by a few large, nearly constant dimensions.
    :param lm_learning_rate: learning rate of the LM's trainable weights (GLAM's 1e-6 by
        default; the value head keeps PPO's ``learning_rate``); ``None`` uses PPO's rate for
        the LM too.  It follows PPO's schedule proportionally.
    :param micro_batch_size: split PPO minibatches into chunks of this many observations,
        each recomputed in the backward pass (activation memory of one chunk only).
    :param gradient_checkpointing: HF per-block gradient checkpointing of the LM.
    :param autocast: run the LM under bf16 autocast (``"auto"``: on CUDA only); weights,
        values and log-probabilities stay fp32.
    :param device_map: spread a model too large for one device over several
        (``"auto"``, a dict module name -> device, or one device); transformers places the
        weights at load time and the LM then stays there: ``policy.to(device)`` (as PPO
        does) moves only the value head, which defines :attr:`device`.  ``None``: the whole
        policy follows ``.to``.  Offloading to CPU RAM or disk is refused.  See
        ``docs/large_models.md``.
    :param max_memory: with a planned ``device_map`` (``"auto"``...), the memory each device
        may give the weights, e.g. ``{0: "30GiB", 1: "30GiB"}``.
    :param ortho_init: must stay ``False``: orthogonal init would overwrite the LM's weights.
    :param share_features_extractor: must stay ``True``: actor and critic share one LM.

    Saving (``PPO.save``, ``policy.save``, pickling) keeps what was trained: with
    ``finetune="lora"``, ``"top_k"`` or ``"frozen"`` (pretrained weights), :meth:`state_dict`
    leaves out the frozen LM weights and names them by ``model`` and a content hash, checked
    when loading (:mod:`llm_policy.saving`); ``"full"`` and ``pretrained=False`` save everything.
    """

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        lr_schedule: Schedule,
        model: str = DEFAULT_MODEL,
        pretrained: bool = True,
        finetune: FinetuneMode = "full",
        top_k: int = 2,
        frozen_cache_bytes: int = DEFAULT_CACHE_BYTES,
        lora_kwargs: dict[str, Any] | None = None,
        normalization: Normalization = "sum",
        score_eos: bool = False,
        scoring_strategy: Strategy = "packed",
        max_padding: float = 0.1,
        prompt_template: PromptTemplate | None = None,
        chat_template: bool = False,
        value_head: tuple[int, ...] = (1024, 1024),
        value_activation: str = "sigmoid",
        value_features: str = "shared",
        value_input_norm: bool = False,
        lm_learning_rate: float | None = DEFAULT_LM_LEARNING_RATE,
        micro_batch_size: int | None = None,
        gradient_checkpointing: bool = False,
        autocast: bool | str = "auto",
        device_map: DeviceMap | None = None,
        max_memory: MaxMemory | None = None,
        ortho_init: bool = False,
        share_features_extractor: bool = True,
        use_sde: bool = False,
        optimizer_class: type[torch.optim.Optimizer] = torch.optim.Adam,
        optimizer_kwargs: dict[str, Any] | None = None,
        **unsupported: Any,
    ) -> None:
        if unsupported:
            raise TypeError(
                f"LLMPolicy got unsupported argument(s) {sorted(unsupported)} (net_arch, activation_fn and "
                "features extractors do not apply: the language model is the network)"
            )
        if ortho_init:
            raise ValueError("ortho_init=True would re-initialise the language model's weights; LLMPolicy needs False")
        if not share_features_extractor:
            raise ValueError(
                "LLMPolicy keeps a single language model for actor and critic: share_features_extractor=True"
            )
        if use_sde:
            raise ValueError("LLMPolicy has a discrete action distribution: use_sde must be False")
        if not isinstance(observation_space, spaces.Dict) or any(k not in observation_space.spaces for k in TEXT_KEYS):
            raise ValueError(
                f"LLMPolicy needs BabyAI-Text observations (a Dict with {list(TEXT_KEYS)}); got {observation_space}. "
                "Use an env from gym.make('BabyAI-Text-...') after `import babyai_text`."
            )
        if not isinstance(action_space, spaces.Discrete):
            raise ValueError(f"LLMPolicy needs a Discrete action space, got {action_space}")
        if value_activation not in _ACTIVATIONS:
            raise ValueError(f"value_activation must be one of {sorted(_ACTIVATIONS)}, got {value_activation!r}")
        if value_features not in VALUE_FEATURES:
            raise ValueError(f"value_features must be one of {VALUE_FEATURES}, got {value_features!r}")
        if micro_batch_size is not None and micro_batch_size < 1:
            raise ValueError(f"micro_batch_size must be >= 1, got {micro_batch_size}")
        if autocast not in (True, False, "auto"):
            raise ValueError(f"autocast must be True, False or 'auto', got {autocast!r}")
        check_placement(device_map, max_memory, pretrained)
        # everything checkable is checked before the language model loads (seconds to minutes)
        if finetune not in FINETUNE_MODES:
            raise ValueError(f"finetune must be one of {FINETUNE_MODES}, got {finetune!r}")
        if normalization not in NORMALIZATIONS:
            raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got {normalization!r}")
        if scoring_strategy not in STRATEGIES:
            raise ValueError(f"scoring_strategy must be one of {STRATEGIES}, got {scoring_strategy!r}")
        if max_padding < 0:
            raise ValueError(f"max_padding must be >= 0, got {max_padding}")
        if not isinstance(top_k, int) or top_k < 1:
            raise ValueError(f"top_k must be a positive number of blocks, got {top_k!r}")
        if frozen_cache_bytes < 0:
            raise ValueError(f"frozen_cache_bytes must be >= 0 (0 disables the cache), got {frozen_cache_bytes}")
        if lm_learning_rate is not None and not lm_learning_rate >= 0:
            raise ValueError(f"lm_learning_rate must be >= 0 or None, got {lm_learning_rate!r}")
        if any(not isinstance(size, int) or size < 1 for size in value_head):
            raise ValueError(f"value_head must list positive layer sizes, got {value_head!r}")
        if lora_kwargs is not None and (finetune != "lora" or not isinstance(lora_kwargs, dict)):
            raise ValueError("lora_kwargs must be a dict and needs finetune='lora'")
        if prompt_template is not None and not isinstance(prompt_template, PromptTemplate):
            raise ValueError(f"prompt_template must be a PromptTemplate, got {type(prompt_template).__name__}")
        if not isinstance(chat_template, bool):
            raise ValueError(f"chat_template must be True or False, got {chat_template!r}")
        self.model_name = model
        self.pretrained = pretrained
        self.finetune: FinetuneMode = finetune
        self.top_k = top_k
        self.frozen_cache_bytes = frozen_cache_bytes
        self.lora_kwargs = lora_kwargs
        self.normalization: Normalization = normalization
        self.score_eos = score_eos
        self.scoring_strategy: Strategy = scoring_strategy
        self.max_padding = max_padding
        self.prompt_template = prompt_template or PromptTemplate()
        self.chat_template = chat_template
        self.value_head_sizes = tuple(value_head)
        self.value_activation = value_activation
        self.value_features = value_features
        self.value_input_norm = value_input_norm
        self.lm_learning_rate = lm_learning_rate
        self.micro_batch_size = micro_batch_size
        self.gradient_checkpointing = gradient_checkpointing
        self.autocast = autocast
        self.device_map = device_map
        self.max_memory = max_memory
        super().__init__(
            observation_space,
            action_space,
            lr_schedule,
            net_arch=[],
            ortho_init=False,
            use_sde=False,
            features_extractor_class=_NoFeatures,
            share_features_extractor=True,
            optimizer_class=optimizer_class,
            optimizer_kwargs=optimizer_kwargs,
        )
        if device_map is not None:
            # used on its own (no PPO to call .to), the policy answers where the LM's outputs arrive
            self.value_net.to(self._lm_device())

    # --- construction -------------------------------------------------------------------

    def _build(self, lr_schedule: Schedule) -> None:
        loaded = load_language_model(
            self.model_name, pretrained=self.pretrained, device_map=self.device_map, max_memory=self.max_memory
        )
        hf_model = loaded.model
        disable_dropout(hf_model)
        if self.gradient_checkpointing:
            hf_model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        self.lm = apply_finetune_mode(hf_model, self.finetune, top_k=self.top_k, lora_kwargs=self.lora_kwargs)
        self.lm_kind = loaded.kind
        self.chat: ChatFormat | None = None
        if self.chat_template:
            if loaded.kind != "causal":
                raise ChatTemplateError(
                    f"chat_template=True needs a decoder-only model; {self.model_name!r} is an encoder-decoder "
                    "model, whose encoder reads GLAM's plain prompt: use chat_template=False"
                )
            self.chat = ChatFormat(loaded.tokenizer, self.model_name)
        self.scorer = ActionScorer(
            hf_model,
            loaded.tokenizer,
            loaded.kind,
            normalization=self.normalization,
            score_eos=self.score_eos,
            strategy=self.scoring_strategy,
            max_padding=self.max_padding,
            model_name=self.model_name,
            special_tokens=self.chat is None,  # a chat template writes the model's special tokens itself
        )
        if self.finetune == "top_k" and self.frozen_cache_bytes > 0:
            blocks = transformer_blocks(hf_model)
            if self.top_k < len(blocks) and loaded.kind == "causal" and self.scoring_strategy == "packed":
                cache = self.scorer.cache_lower_blocks(blocks, self.top_k, self.frozen_cache_bytes)
                if not cache.enabled:
                    warnings.warn(
                        f"frozen-block cache off for {self.model_name!r}: {cache.disabled_reason}; "
                        "PPO's update epochs run the whole model (same results, slower)",
                        stacklevel=2,
                    )
        hidden = hf_model.config.get_text_config().hidden_size
        layers: list[nn.Module] = [RunningStandardizer(hidden)] if self.value_input_norm else []
        for size in self.value_head_sizes:
            layers += [nn.Linear(hidden, size), _ACTIVATIONS[self.value_activation]()]
            hidden = size
        layers.append(nn.Linear(hidden, 1))
        self.value_net = nn.Sequential(*layers)
        self.action_dist = CategoricalDistribution(int(self.action_space.n))

        base_lr = lr_schedule(1)
        lm_params = [p for p in self.lm.parameters() if p.requires_grad]
        groups = [{"params": list(self.value_net.parameters()), LR_SCALE: 1.0}]
        if lm_params:
            group: dict[str, Any] = {"params": lm_params}
            if self.lm_learning_rate is None:
                group[LR_SCALE] = 1.0
            elif base_lr > 0:
                group[LR_SCALE] = self.lm_learning_rate / base_lr
            # else no rate to scale (a policy loaded on its own gets SB3's dummy schedule, whose rate is 0):
            # the scale comes with the optimizer state it loads
            groups.append(group)
        self.optimizer = with_group_lr_scales(self.optimizer_class)(groups, lr=base_lr, **self.optimizer_kwargs)
        # under torchrun every rank trains the same policy: see llm_policy.distributed
        self.rank_sync = RankSync(self) if multi_rank() else None
        self._init_frozen_record()

    def __reduce_ex__(self, protocol: Any) -> tuple[Any, ...]:
        # Pickled (torch.save(policy), deepcopy) as what SB3's policy.save keeps — constructor
        # arguments, weights, optimizer state — since the HF model carries closures (transformers'
        # output-capturing hooks) that do not pickle; unpickling loads the LM by name again.
        # The weights are state_dict()'s: only the trained ones where the base is frozen (its
        # reference, in the state dict's _metadata, is pickled with it and checked on rebuild).
        return _rebuild_policy, (
            type(self),
            self._get_constructor_parameters(),
            self.state_dict(),
            self.optimizer.state_dict(),
            str(self.device),
        )

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        for key in ("net_arch", "activation_fn", "log_std_init", "squash_output", "full_std", "use_expln"):
            data.pop(key, None)
        for key in ("features_extractor_class", "features_extractor_kwargs", "normalize_images"):
            data.pop(key, None)
        data.update(
            model=self.model_name,
            pretrained=self.pretrained,
            finetune=self.finetune,
            top_k=self.top_k,
            frozen_cache_bytes=self.frozen_cache_bytes,
            lora_kwargs=self.lora_kwargs,
            normalization=self.normalization,
            score_eos=self.score_eos,
            scoring_strategy=self.scoring_strategy,
            max_padding=self.max_padding,
            prompt_template=self.prompt_template,
            chat_template=self.chat_template,
            value_head=self.value_head_sizes,
            value_activation=self.value_activation,
            value_features=self.value_features,
            value_input_norm=self.value_input_norm,
            lm_learning_rate=self.lm_learning_rate,
            micro_batch_size=self.micro_batch_size,
            gradient_checkpointing=self.gradient_checkpointing,
            autocast=self.autocast,
            device_map=self.device_map,
            max_memory=self.max_memory,
        )
        return data

    # --- saving -------------------------------------------------------------------------

    def _init_frozen_record(self) -> None:
        """Note which weights a save leaves out, and their state now (as loaded from the files).

        Left out are the LM's frozen *parameters*: the value head (with its standardiser's
        buffers), the trainable LM parameters and the LM's buffers are always saved.  Nothing
        is left out with ``finetune="full"`` or random weights (``pretrained=False``: they are
        not reproducible from the model's name).
        """
        if self.finetune == "full" or not self.pretrained:
            frozen: list[str] = []
        else:
            frozen = [
                name
                for name, param in self.named_parameters(remove_duplicate=False)
                if not param.requires_grad and not name.startswith("value_net.")
            ]
        #: names (in the policy's state dict) of the weights a save may leave out, sorted
        self._frozen_names: tuple[str, ...] = tuple(sorted(frozen))
        self._frozen_at_load = self._frozen_fingerprint()
        self._base_hash: str | None = None  # computed at the first save or compact load

    def _frozen_params(self) -> dict[str, nn.Parameter]:
        params = dict(self.named_parameters(remove_duplicate=False))
        return {name: params[name] for name in self._frozen_names}

    def _frozen_fingerprint(self) -> tuple[tuple[int, int, torch.dtype], ...]:
        # Parameter objects and their version counters survive .to(device) (which swaps the
        # data under the same Parameter) but not an in-place edit, load_state_dict's copy_ or
        # load_state_dict(assign=True): equal fingerprints mean the weights loaded at construction.
        return tuple((id(p), p._version, p.dtype) for p in self._frozen_params().values())

    def frozen_tensors(self) -> dict[str, torch.Tensor]:
        """The frozen LM weights a save leaves out (name in :meth:`state_dict` -> tensor)."""
        return {name: p.detach() for name, p in self._frozen_params().items()}

    def base_weights_hash(self) -> str:
        """Content hash of :meth:`frozen_tensors` (:func:`llm_policy.saving.frozen_weights_hash`),
        computed once while they are the weights loaded at construction."""
        untouched = self._frozen_fingerprint() == self._frozen_at_load
        if untouched and self._base_hash is not None:
            return self._base_hash
        digest = frozen_weights_hash(self.frozen_tensors())
        if untouched:
            self._base_hash = digest
        return digest

    def _saves_compact(self) -> bool:
        """Whether a save may leave the frozen weights out: there are some, and they are still
        those loaded from the model's files (a policy whose frozen weights were edited or
        loaded from elsewhere saves them)."""
        return bool(self._frozen_names) and self._frozen_fingerprint() == self._frozen_at_load

    def state_dict(  # type: ignore[override]
        self, *args: Any, destination: dict[str, Any] | None = None, prefix: str = "", keep_vars: bool = False
    ) -> dict[str, Any]:
        """The weights to save: everything but the frozen LM weights where those come from the
        model's files, plus a record naming them (model name and content hash, in the state
        dict's ``_metadata``, see :mod:`llm_policy.saving`).

        SB3 calls this to save (``PPO.save``, ``get_parameters``, ``policy.save``), as does
        pickling.  A policy nested in another module (called with a ``prefix``) gives the whole
        state, as ``nn.Module.state_dict`` does, since its parent's ``load_state_dict`` would
        not know the record; so does ``nn.Module.state_dict(policy)``.

        :param destination: as ``nn.Module.state_dict``.
        :param prefix: as ``nn.Module.state_dict``.
        :param keep_vars: as ``nn.Module.state_dict``.
        """
        state = super().state_dict(*args, destination=destination, prefix=prefix, keep_vars=keep_vars)
        if destination is not None or prefix or not self._saves_compact():
            return state
        record = {
            "format": RECORD_FORMAT,
            "model": self.model_name,
            "sha256": self.base_weights_hash(),
            "tensors": len(self._frozen_names),
        }
        if set_base_record(state, record):
            for name in self._frozen_names:
                del state[name]
        return state

    def load_state_dict(  # type: ignore[override]
        self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False
    ) -> _IncompatibleKeys:
        """Load a state dict from :meth:`state_dict`, or a whole one (saves that held every weight).

        A state dict saved without its frozen weights keeps this policy's: they must hash to
        the saved record's hash, else :class:`~llm_policy.saving.BaseWeightsMismatchError`
        names the model, both hashes and the fix.  Frozen weights a whole state dict holds
        are copied only where they differ from this policy's, so the policy still counts
        as holding its model's weights (and saves compactly) after loading an old save.

        :param state_dict: the state dict.
        :param strict: as ``nn.Module.load_state_dict`` (frozen weights vouched for by the
            record are not missing).
        :param assign: as ``nn.Module.load_state_dict``.
        :raises BaseWeightsMismatchError: if the frozen weights are not those of the save.
        """
        params = dict(self.named_parameters(remove_duplicate=False))
        record = base_record(state_dict)
        kept: set[str] = set()  # this policy's tensors stand for these names
        if record is not None:
            absent = sorted(n for n in params if n not in state_dict and not n.startswith("value_net."))
            if absent:
                if absent == list(self._frozen_names):
                    current = self.base_weights_hash()
                else:  # e.g. a top-k save loaded with another k or into a "full" policy
                    current = frozen_weights_hash({n: params[n].detach() for n in absent})
                if current != record.get("sha256"):
                    raise BaseWeightsMismatchError(mismatch_message(record, self.model_name, current, len(absent)))
                kept.update(absent)
        if not assign:
            for name in self._frozen_names:
                value = state_dict.get(name)
                if isinstance(value, torch.Tensor) and _same_tensor(value, params[name]):
                    kept.add(name)
        if kept:
            filtered: OrderedDict[str, Any] = OrderedDict((k, v) for k, v in state_dict.items() if k not in kept)
            metadata = getattr(state_dict, "_metadata", None)
            if metadata is not None:
                filtered._metadata = metadata  # type: ignore[attr-defined]
            state_dict = filtered
        result = super().load_state_dict(state_dict, strict=False, assign=assign)
        missing = [k for k in result.missing_keys if k not in kept]
        if strict and (missing or result.unexpected_keys):
            errors = []
            if missing:
                errors.append("Missing key(s) in state_dict: {}. ".format(", ".join(f'"{k}"' for k in missing)))
            if result.unexpected_keys:
                unexpected = ", ".join(f'"{k}"' for k in result.unexpected_keys)
                errors.append(f"Unexpected key(s) in state_dict: {unexpected}. ")
            if missing and record is None and set(missing) <= set(self._frozen_names):
                errors.append(
                    "(the frozen base weights are missing and the state dict carries no record of them: was "
                    "it copied key by key, losing state_dict()'s _metadata? Load the state dict itself)"
                )
            raise RuntimeError(f"Error(s) in loading state_dict for {type(self).__name__}:\n\t" + "\n\t".join(errors))
        return _IncompatibleKeys(missing, result.unexpected_keys)

    # --- devices ------------------------------------------------------------------------

    @property
    def device(self) -> torch.device:
        """Where observations, values and log-probabilities live: the value head's device
        (PPO's, after its ``policy.to``).  With ``device_map`` the LM spans its own devices."""
        return next(self.value_net.parameters()).device

    def _lm_device(self) -> torch.device:
        """The device of the LM's input embeddings, where token ids go."""
        return self.scorer.model.get_input_embeddings().weight.device

    def _apply(self, fn: Callable[[torch.Tensor], torch.Tensor], recurse: bool = True) -> LLMPolicy:
        # .to/.cuda/.cpu/.float all come here.  With device_map the LM keeps the placement
        # transformers gave it: moving it onto one device would undo the split (or not fit),
        # and accelerate's hooks would then send activations to devices that lost their weights.
        if self.device_map is None or not recurse:
            return super()._apply(fn, recurse)
        for module in self.children():
            if module is not self.lm:
                module._apply(fn)
        return super()._apply(fn, recurse=False)

    # --- text ---------------------------------------------------------------------------

    def prompts(self, obs: PyTorchObs) -> tuple[list[str], list[list[str]]]:
        """The prompts and candidate strings for a batch of observations."""
        if not isinstance(obs, dict):
            raise ValueError(f"LLMPolicy expects dict observations, got {type(obs).__name__}")
        texts = decode_batch(obs)
        for text in texts:
            if len(text.action_names) != self.action_space.n:
                raise ValueError(
                    f"the observation names {len(text.action_names)} actions but the action space has "
                    f"{self.action_space.n}"
                )
        if self.chat is not None:
            chat = self.chat
            return [chat.prompt(self.prompt_template.messages(t)) for t in texts], [
                chat.candidates(t.action_names) for t in texts
            ]
        return [self.prompt_template.render(t) for t in texts], [self.prompt_template.candidates(t) for t in texts]

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        lm_device = self._lm_device()
        use = self.autocast is True or (self.autocast == "auto" and lm_device.type == "cuda")
        if not use:
            return contextlib.nullcontext()
        return torch.autocast(device_type=lm_device.type, dtype=torch.bfloat16)

    def _run(self, prompts: list[str], candidates: list[list[str]] | None) -> tuple[torch.Tensor | None, torch.Tensor]:
        with self._autocast():
            out = self.scorer.score(prompts, candidates)
        # with device_map the LM answers on its own devices; PPO's tensors are on the value head's
        device = self.device
        return (out.scores.to(device) if out.scores is not None else None), out.hidden.to(device)

    def _chunks(self, n: int) -> Iterator[slice]:
        size = self.micro_batch_size or n
        for start in range(0, n, size):
            yield slice(start, min(n, start + size))

    def score(self, obs: PyTorchObs, with_actions: bool = True) -> Scores:
        """Action scores (``(batch, n)`` fp32, or ``None``) and value-head inputs for ``obs``."""
        if self.rank_sync is not None:
            self.rank_sync.ensure_broadcast()
        prompts, candidates = self.prompts(obs)
        cands = candidates if with_actions else None
        recompute = self.micro_batch_size is not None and torch.is_grad_enabled()
        scores, hidden = [], []
        for part in self._chunks(len(prompts)):
            args = (prompts[part], cands[part] if cands is not None else None)
            if recompute:
                s, h = checkpoint(self._run, *args, use_reentrant=False)
            else:
                s, h = self._run(*args)
            scores.append(s)
            hidden.append(h)
        return Scores(scores=torch.cat(scores) if with_actions else None, hidden=torch.cat(hidden))

    # --- SB3 API ------------------------------------------------------------------------

    def set_training_mode(self, mode: bool) -> None:
        super().set_training_mode(mode)
        if mode and self.rank_sync is not None:
            self.rank_sync.next_update()  # SB3's train() starts here on every rank

    def _distribution(self, scores: torch.Tensor) -> CategoricalDistribution:
        return self.action_dist.proba_distribution(action_logits=scores.float())

    def forward(self, obs: PyTorchObs, deterministic: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        out = self.score(obs)
        distribution = self._distribution(out.scores)
        actions = distribution.get_actions(deterministic=deterministic)
        values = self.values(out.hidden)
        return actions, values, distribution.log_prob(actions).float()

    def evaluate_actions(
        self, obs: PyTorchObs, actions: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        out = self.score(obs)
        distribution = self._distribution(out.scores)
        values = self.values(out.hidden, update_statistics=True)
        return values, distribution.log_prob(actions).float(), distribution.entropy().float()

    def get_distribution(self, obs: PyTorchObs) -> CategoricalDistribution:
        return self._distribution(self.score(obs).scores)

    def values(self, hidden: torch.Tensor, update_statistics: bool = False) -> torch.Tensor:
        """The value head on the LM's hidden states (``(batch, 1)`` fp32), per :attr:`value_features`.

        :param update_statistics: add ``hidden`` to the input standardisation's statistics
            (``value_input_norm``) first: PPO's update batches do, through :meth:`evaluate_actions`.
        """
        if self.value_features == "detached":
            hidden = hidden.detach()
        if update_statistics and self.value_input_norm and torch.is_grad_enabled():
            self.value_net[0].update(hidden)
        return self.value_net(hidden).float()

    def predict_values(self, obs: PyTorchObs) -> torch.Tensor:
        return self.values(self.score(obs, with_actions=False).hidden)

    def _predict(self, observation: PyTorchObs, deterministic: bool = False) -> torch.Tensor:
        return self.get_distribution(observation).get_actions(deterministic=deterministic)

    def action_probabilities(self, obs: PyTorchObs) -> torch.Tensor:
        """``(batch, n)`` probabilities of each action (no gradient)."""
        with torch.no_grad():
            return self.get_distribution(obs).distribution.probs


def _rebuild_policy(
    cls: type[LLMPolicy],
    data: dict[str, Any],
    state: dict[str, torch.Tensor],
    optimizer_state: dict[str, Any],
    device: str,
) -> LLMPolicy:
    """Unpickles an :class:`LLMPolicy` (see ``LLMPolicy.__reduce_ex__``)."""
    policy = cls(**data).to(device)
    policy.load_state_dict(state)
    policy.optimizer.load_state_dict(optimizer_state)
    return policy


def _same_tensor(saved: torch.Tensor, current: torch.Tensor) -> bool:
    """Whether ``saved`` holds exactly ``current``'s values (dtype, shape and every element)."""
    if saved.dtype != current.dtype or saved.shape != current.shape:
        return False
    return torch.equal(saved.to(current.device), current.detach())
