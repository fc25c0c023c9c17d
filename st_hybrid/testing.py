"""Offline helpers for tests, benchmarks and examples: a tiny random multilingual model.

The Hub cannot be reached in CI, so tests build their own small sentence-transformers model: a
2-layer BERT with a WordPiece vocabulary trained on a handful of sentences. It is random (its
retrieval quality is meaningless) but it exercises the real loading, training and saving code.

Usage:
    >>> from st_hybrid.testing import build_tiny_model
    >>> path = build_tiny_model("/tmp/tiny-model")  # doctest: +SKIP
    >>> from sentence_transformers import SentenceTransformer
    >>> SentenceTransformer(path).encode(["hello"]).shape  # doctest: +SKIP
    (1, 32)
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

__all__ = ["DEFAULT_TOKENIZER_CORPUS", "build_tiny_model", "build_tiny_static_model"]

# A few sentences in several scripts so that the vocabulary covers the languages of the shared data.
DEFAULT_TOKENIZER_CORPUS = (
    "query: passage: What is the capital of France? Paris is the capital of France.",
    "Was ist die Hauptstadt von Frankreich? Paris ist die Hauptstadt Frankreichs.",
    "¿Cuál es la capital de Francia? París es la capital de Francia.",
    "Thủ đô của Pháp là gì? Paris là thủ đô của Pháp.",
    "ما هي عاصمة فرنسا؟ باريس هي عاصمة فرنسا.",
    "फ्रांस की राजधानी क्या है? पेरिस फ्रांस की राजधानी है।",
    "法国的首都是什么？巴黎是法国的首都。",
    "Какая столица Франции? Париж — столица Франции.",
    "Ποια είναι η πρωτεύουσα της Γαλλίας; Το Παρίσι είναι η πρωτεύουσα της Γαλλίας.",
    "เมืองหลวงของฝรั่งเศสคืออะไร ปารีสเป็นเมืองหลวงของฝรั่งเศส",
    "Fransa'nın başkenti neresidir? Paris, Fransa'nın başkentidir.",
    "0 1 2 3 4 5 6 7 8 9 the a of in and to is was for on with by",
)


def _train_tokenizer(texts: Iterable[str], vocab_size: int):
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.train_from_iterator(
        list(texts), trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=specials)
    )
    cls_id, sep_id = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B [SEP]",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=128,
    )


def _bert(vocab_size: int, hidden_size: int, num_layers: int, max_seq_length: int):
    from transformers import BertConfig, BertModel

    return BertModel(
        BertConfig(
            vocab_size=vocab_size,
            hidden_size=hidden_size,
            num_hidden_layers=num_layers,
            num_attention_heads=max(1, hidden_size // 16),
            intermediate_size=hidden_size * 2,
            max_position_embeddings=max_seq_length + 2,
        )
    )


def _mt5(vocab_size: int, hidden_size: int, num_layers: int, max_seq_length: int):
    from transformers import MT5Config, MT5EncoderModel

    heads = max(1, hidden_size // 16)
    config = MT5Config(
        vocab_size=vocab_size,
        d_model=hidden_size,
        d_kv=hidden_size // heads,
        d_ff=hidden_size * 2,
        num_layers=num_layers,
        num_heads=heads,
        pad_token_id=0,  # [PAD] is the first special token of the tiny vocabulary
        decoder_start_token_id=0,
    )
    return MT5EncoderModel(config)


_BACKBONES = {"bert": _bert, "mt5": _mt5}


def build_tiny_model(
    output_dir: str | Path,
    *,
    texts: Iterable[str] | None = None,
    hidden_size: int = 32,
    num_layers: int = 2,
    vocab_size: int = 1000,
    max_seq_length: int = 64,
    seed: int = 0,
    prompts: dict[str, str] | None = None,
    architecture: str = "bert",
) -> str:
    """Build and save a tiny random sentence-transformers model (encoder + mean pooling + normalize).

    Args:
        output_dir: Folder to write the model to. Reused as is when it already holds a model.
        texts: Sentences to train the WordPiece vocabulary on; a small multilingual default otherwise.
        hidden_size: Embedding dimension.
        num_layers: Number of transformer layers.
        vocab_size: Upper bound on the vocabulary size.
        max_seq_length: Maximum number of tokens per input.
        seed: Seed of the random weight initialization.
        prompts: Named prompts stored with the model, e.g. ``{"query": "query: ", "document": "passage: "}``.
        architecture: ``"bert"`` (a BERT encoder) or ``"mt5"`` (an mT5 config, which sentence-transformers
            loads as ``MT5EncoderModel``: the encoder-only path of the mT5 family).

    Returns:
        The folder, loadable with ``SentenceTransformer(folder)``.
    """
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer

    if architecture not in _BACKBONES:
        raise ValueError(f"Unknown architecture {architecture!r}; choose one of {sorted(_BACKBONES)}.")
    output_dir = Path(output_dir)
    if (output_dir / "modules.json").exists():
        return str(output_dir)

    backbone_dir = output_dir / "_backbone"
    tokenizer = _train_tokenizer(texts or DEFAULT_TOKENIZER_CORPUS, vocab_size)
    torch.manual_seed(seed)
    _BACKBONES[architecture](len(tokenizer), hidden_size, num_layers, max_seq_length).save_pretrained(
        backbone_dir
    )
    tokenizer.save_pretrained(backbone_dir)

    transformer = Transformer(str(backbone_dir), max_seq_length=max_seq_length)
    pooling = Pooling(transformer.get_embedding_dimension(), pooling_mode="mean")
    model = SentenceTransformer(modules=[transformer, pooling, Normalize()], prompts=prompts or {})
    model.save(str(output_dir))
    # The backbone copy is only an intermediate: the saved model holds its own weights.
    for path in sorted(backbone_dir.iterdir()):
        path.unlink()
    backbone_dir.rmdir()
    (output_dir / "st_hybrid_tiny.json").write_text(
        json.dumps({"seed": seed, "hidden_size": hidden_size, "architecture": architecture})
    )
    return str(output_dir)


def build_tiny_static_model(
    output_path: str | Path, tokenizer_source: str | Path, embedding_dim: int = 16
) -> str:
    """A random static-embedding model (``StaticEmbedding`` + ``Normalize``) on another tiny model's tokenizer.

    Static models have no transformer and no length limit: their embedding table is the whole model.

    Usage:
        >>> folder = build_tiny_static_model(tmp / "static", build_tiny_model(tmp / "bert"))  # doctest: +SKIP
    """
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Normalize, StaticEmbedding
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(Path(tokenizer_source) / "tokenizer.json"))
    model = SentenceTransformer(
        modules=[StaticEmbedding(tokenizer, embedding_dim=embedding_dim), Normalize()]
    )
    model.save(str(output_path))
    return str(output_path)
