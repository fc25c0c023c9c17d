"""Other encoder families through the whole st-hybrid path: an mT5 encoder trains and evaluates.

sentence-transformers loads an mT5 checkpoint as ``MT5EncoderModel`` (encoder only); the model-size
research question names the mT5 family, so its path must work end to end, here on a tiny random mT5.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from sentence_transformers import SentenceTransformer, SentenceTransformerTrainingArguments
from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

from st_hybrid.data import build_training_pairs, load_lareqa
from st_hybrid.evaluation import LanguageAwareRetrievalEvaluator
from st_hybrid.testing import build_tiny_model
from st_hybrid.trainer import HybridTrainer

ROOT = Path(__file__).resolve().parents[1]


def test_tiny_mt5_encoder_trains_with_hybrid_batches_and_evaluates(tmp_path, shared_data):
    model = SentenceTransformer(build_tiny_model(tmp_path / "tiny-mt5", architecture="mt5"))
    assert type(model[0].auto_model).__name__ == "MT5EncoderModel"
    languages = ["de", "en", "es"]
    pairs = build_training_pairs(load_lareqa(shared_data / "mlqa-r", languages=languages, max_articles=3))
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    args = SentenceTransformerTrainingArguments(
        output_dir=str(tmp_path / "out"),
        per_device_train_batch_size=8,
        max_steps=3,
        learning_rate=1e-3,
        report_to="none",
        save_strategy="no",
        use_cpu=True,
    )
    trainer = HybridTrainer(
        model=model, args=args, train_dataset=pairs, loss=MultipleNegativesRankingLoss(model)
    )
    trainer.train()
    changed = [name for name, p in model.named_parameters() if not torch.equal(p, before[name])]
    assert any("encoder.block" in name for name in changed)

    evaluator = LanguageAwareRetrievalEvaluator.from_lareqa(
        shared_data / "xquad-r", languages=languages, max_articles=1, name="xquad-r"
    )
    results = evaluator(model)
    for setting in ("mono", "cross", "multi"):
        assert 0.0 < results[f"xquad-r_{setting}_map"] <= 1.0
    assert results["xquad-r_rank_distance"] >= 0.0

    model.save(str(tmp_path / "saved"))
    reloaded = SentenceTransformer(str(tmp_path / "saved"))
    texts = ["Wo liegt Paris?", "Paris is in France."]
    torch.testing.assert_close(
        torch.tensor(reloaded.encode(texts)), torch.tensor(model.encode(texts)), atol=1e-5, rtol=0
    )


def test_gpu_mt5_config_trains_a_tiny_mt5_through_train_py(tmp_path, shared_data):
    """examples/configs/gpu_mt5.yaml as shipped (bf16, cached MNRL, hybrid batches), on CPU with a tiny mT5.

    Only what a CPU test cannot take is overridden: the Hub id (a local tiny mT5 instead), the size of the
    run and the data, and ``use_cpu`` (bf16 on CPU).
    """
    sys.path.insert(0, str(ROOT / "examples"))
    import train  # examples/train.py

    config = ROOT / "examples" / "configs" / "gpu_mt5.yaml"
    shipped = train.parse_args(["--config", str(config), "--use_cpu"])
    assert shipped.model.model.startswith("google/mt5-") and shipped.training.bf16
    assert shipped.loss.loss == "cached_mnrl" and shipped.batches.strategy == "hybrid"

    model = build_tiny_model(tmp_path / "tiny-mt5", architecture="mt5")
    small = {
        "model": model,
        "train_languages": ["en", "de", "es"],
        "max_train_pairs": 300,
        "batch_size": 8,
        "mini_batch_size": 4,
        "max_steps": 2,
        "dataloader_num_workers": 0,
        "eval_languages": ["en", "de"],
        "eval_max_articles": 1,
        "output_dir": str(tmp_path / "run"),
    }
    arguments = train.parse_args(["--config", str(config), "--use_cpu"], overrides=small)
    assert arguments.training.bf16 and arguments.loss.loss == "cached_mnrl"
    results = train.run(arguments)
    assert results["global_step"] == 2
    for stage in ("before", "after"):
        assert 0.0 < results[stage]["metrics"]["multi_map"] <= 1.0
    assert results["after"]["metrics"] != results["before"]["metrics"]
    saved = SentenceTransformer(str(tmp_path / "run" / "model"))
    assert type(saved[0].auto_model).__name__ == "MT5EncoderModel"
