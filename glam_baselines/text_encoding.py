"""Word-level encoding of BabyAI-Text strings for the baseline networks."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch

from babyai_text.language import ENGLISH, Language
from babyai_text.vocabulary import language_vocabulary, split_words

PAD, UNK = "<pad>", "<unk>"


class WordVocabulary:
    """Maps words to ids; words outside the list (renamed objects, invented words,
    French...) map to ``<unk>``.

    The default list is fixed: every word ``language`` (standard English, the training
    language) can say, derived from its word tables, plus the words of ``extra_words``.
    A model stores :attr:`words` and rebuilds its vocabulary from them (``words=``), so
    a later change of the package's word lists cannot shift a saved model's ids.

    :param extra_words: texts whose words are added to the default list (e.g. a prompt template's lines).
    :param words: the exact list, ``<pad>`` and ``<unk>`` first (a saved :attr:`words`);
        replaces the default list and ``extra_words``.
    :param language: the language of the default list.
    """

    def __init__(
        self, extra_words: Iterable[str] = (), words: Sequence[str] | None = None, language: Language = ENGLISH
    ) -> None:
        if words is None:
            known = set(language_vocabulary(language)) | {w for text in extra_words for w in split_words(text)}
            words = (PAD, UNK, *sorted(known))
        elif tuple(words[:2]) != (PAD, UNK) or len(set(words)) != len(words):
            raise ValueError(f"a word list must start with {PAD!r}, {UNK!r} and hold each word once")
        self.words: tuple[str, ...] = tuple(words)
        self.index = {w: i for i, w in enumerate(self.words)}

    def __len__(self) -> int:
        return len(self.words)

    def encode(self, text: str) -> list[int]:
        """Ids of the words of ``text`` (``[<unk>]`` for a text without words)."""
        unk = self.index[UNK]
        return [self.index.get(w, unk) for w in split_words(text)] or [unk]

    def batch(self, texts: Sequence[str], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """Right-padded ``(len(texts), longest)`` ids and the lengths."""
        encoded = [self.encode(t) for t in texts]
        lengths = torch.tensor([len(e) for e in encoded])
        ids = torch.zeros((len(encoded), int(lengths.max())), dtype=torch.long)
        for i, e in enumerate(encoded):
            ids[i, : len(e)] = torch.tensor(e)
        return ids.to(device), lengths


class SavedVocabulary:
    """Mixin for a ``torch.nn.Module`` whose embeddings are indexed by a
    :class:`WordVocabulary`: the word list is a buffer of the module (UTF-8 bytes, so the
    ``state_dict`` holds only tensors), and loading a ``state_dict`` restores it, resizing
    the embeddings in place first (the same parameter objects, so an optimizer built on
    them stays valid).

    SB3's ``DQN.load``/``PPO.load`` rebuild the policy from the ``policy_kwargs`` given at
    training time, not from the policy's constructor parameters, so the vocabulary a
    model was built with must travel with its weights.
    """

    VOCABULARY_BUFFER = "vocabulary_utf8"
    vocabulary: WordVocabulary

    def vocabulary_embeddings(self) -> list[torch.nn.Embedding]:
        """The embeddings indexed by :attr:`vocabulary`'s ids."""
        raise NotImplementedError

    def set_vocabulary(self, vocabulary: WordVocabulary) -> None:
        """Use ``vocabulary`` (resizing the embeddings to it; new rows are zero)."""
        self.vocabulary = vocabulary
        embeddings = self.vocabulary_embeddings()
        data = torch.frombuffer(bytearray("\n".join(vocabulary.words).encode("utf-8")), dtype=torch.uint8)
        self.register_buffer(self.VOCABULARY_BUFFER, data.clone().to(embeddings[0].weight.device))  # type: ignore[attr-defined]
        for embedding in embeddings:
            if embedding.num_embeddings != len(vocabulary):
                embedding.weight.data = embedding.weight.data.new_zeros((len(vocabulary), embedding.embedding_dim))
                embedding.num_embeddings = len(vocabulary)

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any) -> None:
        saved = state_dict.get(prefix + self.VOCABULARY_BUFFER)
        if saved is not None:
            words = tuple(bytes(saved.cpu().numpy()).decode("utf-8").split("\n"))
            if words != self.vocabulary.words:
                # before the weights are copied (children load after their parent)
                self.set_vocabulary(WordVocabulary(words=words))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)  # type: ignore[misc]


class GRUTextEncoder(torch.nn.Module):
    """Embedding + GRU; the encoding is the last hidden state of each (unpadded) text."""

    def __init__(self, vocab_size: int, embedding_dim: int = 128, hidden_dim: int = 128) -> None:
        super().__init__()
        self.embedding = torch.nn.Embedding(vocab_size, embedding_dim, padding_idx=0)
        self.gru = torch.nn.GRU(embedding_dim, hidden_dim, batch_first=True)

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        packed = torch.nn.utils.rnn.pack_padded_sequence(
            self.embedding(ids), lengths.cpu(), batch_first=True, enforce_sorted=False
        )
        _, hidden = self.gru(packed)
        return hidden[-1]
