"""Word-level encoding of BabyAI-Text strings for the baseline networks."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch

from babyai_text.vocabulary import babyai_vocabulary, split_words

PAD, UNK = "<pad>", "<unk>"


class WordVocabulary:
    """Maps words to ids; unknown words (renamed objects, French...) map to ``<unk>``.

    :param extra_words: words beyond BabyAI-Text's own (e.g. a prompt template's).
    """

    def __init__(self, extra_words: Iterable[str] = ()) -> None:
        words = sorted(set(babyai_vocabulary()) | {w for text in extra_words for w in split_words(text)})
        self.words: tuple[str, ...] = (PAD, UNK, *words)
        self.index = {w: i for i, w in enumerate(self.words)}

    def __len__(self) -> int:
        return len(self.words)

    def encode(self, text: str) -> list[int]:
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
