"""What of the language model trains: everything, LoRA adapters (peft), or the top blocks."""

from __future__ import annotations

from typing import Any, Literal

from torch import nn
from transformers import PreTrainedModel

FinetuneMode = Literal["full", "lora", "top_k", "frozen"]
FINETUNE_MODES: tuple[str, ...] = ("full", "lora", "top_k", "frozen")


def disable_dropout(model: nn.Module) -> None:
    """Set every dropout probability of ``model`` to zero (modules, attributes and config).

    PPO's ratio of new to old probabilities assumes the policy is deterministic given its
    weights; LM dropout would make it noise.
    """
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = 0.0
        for name, value in list(vars(module).items()):
            # attention implementations read floats such as `attention_dropout` directly
            if isinstance(value, float) and ("dropout" in name or name.endswith("pdrop")):
                setattr(module, name, 0.0)
    config = getattr(model, "config", None)
    if config is not None:
        for name, value in list(vars(config).items()):
            if isinstance(value, float) and ("dropout" in name or name.endswith("pdrop")):
                setattr(config, name, 0.0)


def transformer_blocks(model: PreTrainedModel) -> nn.ModuleList:
    """The stack of blocks the top-k mode trains: the decoder's (the only stack of a causal LM)."""
    root: nn.Module = model.get_decoder() if hasattr(model, "get_decoder") else model
    if root is None:
        root = model
    lists = [m for m in root.modules() if isinstance(m, nn.ModuleList) and len(m) > 0]
    if not lists:
        raise ValueError(f"cannot find the transformer blocks of {type(model).__name__}")
    return max(lists, key=len)


def final_norms(model: PreTrainedModel, blocks: nn.ModuleList) -> list[nn.Module]:
    """Normalisation layers registered after the block stack (Llama's ``norm``, GPT-2's ``ln_f``...)."""
    decoder = model.get_decoder() if hasattr(model, "get_decoder") else None
    root = decoder if decoder is not None else model
    norms, after = [], False
    for module in root.children():
        if module is blocks:
            after = True
        elif after and "norm" in type(module).__name__.lower():
            norms.append(module)
    return norms


def apply_finetune_mode(
    model: PreTrainedModel,
    mode: FinetuneMode,
    *,
    top_k: int = 2,
    lora_kwargs: dict[str, Any] | None = None,
) -> nn.Module:
    """Freeze or adapt ``model`` for ``mode``; returns the module to register in the policy.

    - ``"full"``: every weight trains (GLAM).
    - ``"lora"``: peft LoRA adapters on every linear layer of the blocks (``lora_kwargs``
      go to ``peft.LoraConfig``; defaults r=8, alpha=16, dropout 0); the base is frozen.
    - ``"top_k"``: the last ``top_k`` decoder blocks and the final norm train; everything
      below is frozen, so autograd records nothing there (no activations kept).
    - ``"frozen"``: nothing of the LM trains (only the value head).

    The returned module is ``model`` itself, or the peft wrapper around it; ``model``'s
    own forward runs with the adapters in place either way.
    """
    if mode not in FINETUNE_MODES:
        raise ValueError(f"finetune must be one of {FINETUNE_MODES}, got {mode!r}")
    if mode == "full":
        model.requires_grad_(True)
        return model
    model.requires_grad_(False)
    if mode == "frozen":
        return model
    if mode == "top_k":
        blocks = transformer_blocks(model)
        if not 1 <= top_k <= len(blocks):
            raise ValueError(f"top_k must be between 1 and the model's {len(blocks)} blocks, got {top_k}")
        for block in list(blocks)[-top_k:]:
            block.requires_grad_(True)
        for norm in final_norms(model, blocks):
            norm.requires_grad_(True)
        return model
    from peft import LoraConfig, get_peft_model

    options = {"r": 8, "lora_alpha": 16, "lora_dropout": 0.0, "target_modules": "all-linear"}
    options.update(lora_kwargs or {})
    if options["lora_dropout"]:
        raise ValueError("lora_dropout must be 0: dropout would make PPO's probability ratios noisy")
    return get_peft_model(model, LoraConfig(**options))
