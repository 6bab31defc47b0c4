"""hf-text-classification: a tiny BERT built from a config, fine-tuned with DDP, fully offline.

Entry point `commonpool.workers.examples.hf_text_classification:train`.

- Text: short product reviews generated from the seed (templates, positive
  and negative opinion words, neutral filler, and "not" flipping the
  label), so every worker builds the same corpus with no download.
- Tokenizer: a WordPiece tokenizer trained on that corpus with the
  `tokenizers` library, wrapped as a `transformers.PreTrainedTokenizerFast`.
- Model: `BertForSequenceClassification(BertConfig(...))` with random
  weights (no hub access; `HF_HUB_OFFLINE=1` is set before the import).
- Training: the shared DDP loop (`ddp.fit`), so sharding, per-epoch
  `job.report`, rank-0 checkpoints and resume are the same as for the
  other examples. `TextClassifier` adapts the model to `model(x) -> logits`.
"""

from __future__ import annotations

import os
import random
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
from torch import nn
from torch.utils.data import TensorDataset
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    PreTrainedTokenizerFast,
)

from commonpool.workers.examples.ddp import fit

DEFAULTS: dict[str, Any] = {
    "epochs": 6,
    "batch_size": 32,
    "lr": 0.003,
    "optimizer": "adamw",
    "samples": 1200,
    "max_length": 16,
    "hidden": 32,
    "layers": 2,
    "heads": 2,
    "seed": 0,
}

POSITIVE = ["great", "excellent", "lovely", "reliable", "fantastic", "solid", "perfect", "good"]
NEGATIVE = ["awful", "broken", "terrible", "flimsy", "useless", "poor", "bad", "disappointing"]
NOUNS = ["kettle", "laptop", "chair", "lamp", "camera", "backpack", "phone", "blender", "desk"]
TEMPLATES = [
    "the {noun} is {neg}{adj}",
    "this {noun} was {neg}{adj} overall",
    "i think the {noun} looks {neg}{adj}",
    "{neg}{adj} {noun} , would say so again",
    "my new {noun} feels {neg}{adj} {filler}",
]
FILLER = ["today", "so far", "for the price", "after a week", "honestly", "as expected"]


def make_corpus(n: int, seed: int) -> tuple[list[str], list[int]]:
    """`n` generated reviews and their labels (1 positive, 0 negative); "not" flips the label."""
    rng = random.Random(seed)
    texts, labels = [], []
    for _ in range(n):
        positive = rng.random() < 0.5
        negated = rng.random() < 0.25
        adj = rng.choice(POSITIVE if positive else NEGATIVE)
        text = rng.choice(TEMPLATES).format(
            noun=rng.choice(NOUNS),
            adj=adj,
            neg="not " if negated else "",
            filler=rng.choice(FILLER),
        )
        texts.append(text)
        labels.append(int(positive != negated))
    return texts, labels


def train_tokenizer(texts: list[str], vocab_size: int = 200) -> PreTrainedTokenizerFast:
    """A WordPiece tokenizer trained here on `texts` (nothing is downloaded)."""
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok.train_from_iterator(
        texts, trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=special)
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )


def encode(tokenizer: PreTrainedTokenizerFast, texts: list[str], labels: list[int],
           max_length: int) -> TensorDataset:
    batch = tokenizer(
        [f"[CLS] {t} [SEP]" for t in texts],
        padding="max_length",
        truncation=True,
        max_length=max_length,
        return_tensors="pt",
    )
    return TensorDataset(batch["input_ids"], torch.tensor(labels))


class TextClassifier(nn.Module):
    """`input_ids -> logits` around a Hugging Face model, as the shared loop expects."""

    def __init__(self, model: BertForSequenceClassification, pad_id: int) -> None:
        super().__init__()
        self.model = model
        self.pad_id = pad_id

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        mask = (input_ids != self.pad_id).long()
        return self.model(input_ids=input_ids, attention_mask=mask).logits


def build_model(tokenizer: PreTrainedTokenizerFast, cfg: dict[str, Any]) -> TextClassifier:
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=cfg["hidden"],
        num_hidden_layers=cfg["layers"],
        num_attention_heads=cfg["heads"],
        intermediate_size=cfg["hidden"] * 4,
        max_position_embeddings=cfg["max_length"],
        pad_token_id=tokenizer.pad_token_id,
        num_labels=2,
    )
    return TextClassifier(BertForSequenceClassification(config), tokenizer.pad_token_id)


def datasets(cfg: dict[str, Any]) -> tuple[PreTrainedTokenizerFast, TensorDataset, TensorDataset]:
    """Tokenizer (trained on the training text only) and the encoded train/test sets."""
    train_texts, train_labels = make_corpus(cfg["samples"], cfg["seed"])
    test_texts, test_labels = make_corpus(max(cfg["samples"] // 4, 64), cfg["seed"] + 1)
    tokenizer = train_tokenizer(train_texts)
    return (
        tokenizer,
        encode(tokenizer, train_texts, train_labels, cfg["max_length"]),
        encode(tokenizer, test_texts, test_labels, cfg["max_length"]),
    )


def train(config: dict[str, Any]) -> dict[str, float]:
    cfg = {**DEFAULTS, **(config or {})}
    torch.manual_seed(cfg["seed"])
    tokenizer, train_set, test_set = datasets(cfg)
    return fit(build_model(tokenizer, cfg), train_set, test_set, cfg)
