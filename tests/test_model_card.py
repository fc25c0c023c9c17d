"""Golden checks of the model and dataset cards: tables hold the report's numbers, metadata validates."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from st_hybrid.model_card import (
    DatasetCardInfo,
    ModelCardInfo,
    build_eval_results,
    dataset_statistics,
    find_template,
    load_report,
    render_dataset_card,
    render_model_card,
    write_model_card,
)

LANGUAGES = ["ar", "de", "en", "el"]  # el is not a training language below


def _report_dict(name: str = "xquad-r") -> dict:
    per_language = {
        lang: {
            "mono_map": 0.8111 + i / 100,
            "cross_map": 0.6222 + i / 100,
            "multi_map": 0.5333 + i / 100,
            "rank_distance": 250.44 + i,
            "multi_ndcg@10": 0.6444 + i / 100,
            "multi_recall@10": 0.4,
        }  # fmt: skip
        for i, lang in enumerate(LANGUAGES)
    }
    return {
        "name": name,
        "languages": LANGUAGES,
        "num_queries": 4760,
        "num_candidates": 4904,
        "metrics": {
            "mono_map": 0.8123,
            "cross_map": 0.6234,
            "multi_map": 0.5345,
            "rank_distance": 301.26,
            "multi_ndcg@10": 0.6456,
            "multi_recall@1": 0.3,
            "multi_mrr@10": 0.6012,
        },  # fmt: skip
        "per_language": per_language,
        "pair_map": {a: {b: 0.8 if a == b else 0.6 for b in LANGUAGES} for a in LANGUAGES},
    }


def _write_report(folder: Path, name: str = "xquad-r", heatmap: bool = True) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}_metrics.json"
    path.write_text(json.dumps(_report_dict(name)))
    if heatmap:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(1, 1), dpi=20)
        ax.imshow([[0.8, 0.6], [0.6, 0.8]])
        fig.savefig(folder / f"{name}_pair_map.png")
        plt.close(fig)
    return path


def _info(**overrides) -> ModelCardInfo:
    fields = {
        "base_model": "intfloat/multilingual-e5-small",
        "strategy": "hybrid",
        "alpha": 0.5,
        "languages": ["ar", "de", "en"],
        "language_weighting": "uniform over languages, datasets by size",
        "train_datasets": [{"name": "XQuAD-R pairs", "id": "user/xquad-r-pairs", "size": 12345}, "Tatoeba"],
        "hyperparameters": {"learning_rate": 3e-5, "per_device_train_batch_size": 100},
        "loss": "MultipleNegativesRankingLoss",
        "num_training_pairs": 12345,
    }
    fields.update(overrides)
    return ModelCardInfo(**fields)


def _table_rows(text: str, header_start: str) -> list[list[str]]:
    """Rows (cells) of the markdown table whose header line starts with ``header_start``."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header_start))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


# ---------------------------------------------------------------------------------------------------------------
# Model card
# ---------------------------------------------------------------------------------------------------------------
def test_tables_hold_the_report_numbers(tmp_path):
    report = _report_dict()
    text = render_model_card(_info(), [_write_report(tmp_path)], repo_id="user/hybrid")

    summary = _table_rows(text, "| Benchmark |")
    m = report["metrics"]
    assert summary == [["xquad-r", "4", "4760", "4904", f"{m['mono_map']:.4f}", f"{m['cross_map']:.4f}",
                        f"{m['multi_map']:.4f}", f"{m['rank_distance']:.1f}", f"{m['multi_ndcg@10']:.4f}"]]  # fmt: skip

    per_language = {row[0]: row[1:] for row in _table_rows(text, "| Language | Mono mAP")}
    assert set(per_language) == {"ar", "de", "en", "el †"}  # el was not seen in training
    for lang, metrics in report["per_language"].items():
        cells = per_language[lang if lang != "el" else "el †"]
        expected = [f"{metrics['mono_map']:.4f}", f"{metrics['cross_map']:.4f}", f"{metrics['multi_map']:.4f}",
                    f"{metrics['rank_distance']:.1f}", f"{metrics['multi_ndcg@10']:.4f}"]  # fmt: skip
        assert cells == expected, lang

    pair_rows = {row[0]: row[1:] for row in _table_rows(text, "| query \\ candidates |")}
    assert pair_rows["de"] == ["0.6000", "0.8000", "0.6000", "0.6000"]  # columns ar, de, el, en
    assert "`multi_mrr@10` = 0.6012" in text and "`multi_recall@1` = 0.3000" in text
    assert "![xquad-r language-pair mAP](assets/xquad-r_pair_map.png)" in text


def test_training_section_and_usage_and_citations():
    text = render_model_card(_info(), [], repo_id="user/hybrid")
    assert "| Batch strategy | `hybrid` — hybrid (mono + cross-lingual) |" in text
    assert "| alpha (probability of a monolingual batch) | 0.5 |" in text
    assert "| Language weighting | uniform over languages, datasets by size |" in text
    assert "| `learning_rate` | `3e-05` |" in text
    assert "| [XQuAD-R pairs](https://huggingface.co/datasets/user/xquad-r-pairs) |  | 12,345 |  |" in text
    assert 'model = SentenceTransformer("user/hybrid")' in text and "import st_hybrid" not in text
    assert "arXiv:2408.10536" in text and "LAReQA" in text and "2004.05484" in text
    assert "No evaluation report was attached" in text


def test_model_index_validates_with_huggingface_hub_classes(tmp_path):
    from huggingface_hub import EvalResult, ModelCard, ModelCardData
    from huggingface_hub.repocard_data import model_index_to_eval_results

    text = render_model_card(_info(), [_write_report(tmp_path, "xquad-r"), _write_report(tmp_path, "mlqa-r")],
                             repo_id="user/hybrid")  # fmt: skip
    card = ModelCard(text)
    data = card.data
    assert isinstance(data, ModelCardData)
    assert data.library_name == "sentence-transformers" and data.pipeline_tag == "sentence-similarity"
    assert data.language == ["ar", "de", "en"] and data.base_model == "intfloat/multilingual-e5-small"
    assert data.datasets == ["user/xquad-r-pairs"] and data.license == "apache-2.0"
    assert all(isinstance(r, EvalResult) for r in data.eval_results)
    # 2 reports x (all + 4 languages) x 5 metrics
    assert len(data.eval_results) == 2 * 5 * 5
    values = {(r.dataset_name, r.dataset_config, r.metric_type): r.metric_value for r in data.eval_results}
    assert values[("xquad-r", "all", "mono_map")] == 0.8123
    assert values[("mlqa-r", "all", "rank_distance")] == 301.26
    assert values[("xquad-r", "de", "ndcg_at_10")] == pytest.approx(0.6544)
    # The model-index survives a round trip through huggingface_hub's own conversion.
    name, results = model_index_to_eval_results(data.to_dict()["model-index"])
    assert name == "user/hybrid" and len(results) == len(data.eval_results)


def test_write_model_card_ships_heatmap_and_report(tmp_path, tiny_model_path, monkeypatch):
    import shutil

    monkeypatch.delenv("HF_ENDPOINT", raising=False)
    model = tmp_path / "model"
    shutil.copytree(tiny_model_path, model)
    report = _write_report(tmp_path / "eval")
    readme = write_model_card(model, _info(), [report], repo_id="user/hybrid")
    assert readme == model / "README.md"
    assert (model / "assets" / "xquad-r_pair_map.png").read_bytes() == (
        report.parent / "xquad-r_pair_map.png"
    ).read_bytes()
    assert (
        json.loads((model / "eval" / "xquad-r_metrics.json").read_text())["metrics"]
        == _report_dict()["metrics"]
    )
    text = readme.read_text()
    assert "| Output dimension | 32 |" in text  # read from the saved model folder
    # With a repo id the image link is absolute (as sentence-transformers does for its card assets).
    assert "(https://huggingface.co/user/hybrid/resolve/main/assets/xquad-r_pair_map.png)" in text
    assert re.search(r"Architecture \(`modules.json`\): Transformer → Pooling → Normalize", text)


def test_sentence_transformers_save_writes_the_hybrid_card(tmp_path, tiny_model_path):
    from huggingface_hub import ModelCard
    from sentence_transformers import SentenceTransformer

    from st_hybrid.model_card import HybridModelCardData

    data = HybridModelCardData(hybrid_info=_info(), local_files_only=True, generate_widget_examples=False)
    model = SentenceTransformer(tiny_model_path, model_card_data=data)
    model._model_card_text = None  # a model loaded from a folder otherwise keeps its old README (NOTES.md)
    data.hybrid_reports.append(_write_report(tmp_path / "eval"))
    model.save(str(tmp_path / "saved"), model_name="user/hybrid-st")
    text = (tmp_path / "saved" / "README.md").read_text()
    assert "| xquad-r | 4 | 4760 | 4904 | 0.8123 |" in text
    assert 'SentenceTransformer("user/hybrid-st")' in text
    assert (tmp_path / "saved" / "assets" / "xquad-r_pair_map.png").is_file()
    assert len(ModelCard(text).data.eval_results) == 25


def test_strategy_and_alpha_are_validated():
    with pytest.raises(ValueError, match="Unknown strategy"):
        ModelCardInfo(strategy="random")
    with pytest.raises(ValueError, match="alpha"):
        ModelCardInfo(alpha=1.5)
    with pytest.raises(ValueError, match="Unknown model card field"):
        ModelCardInfo.from_dict({"learning_rate": 1e-5})
    assert ModelCardInfo(strategy="cross").alpha is None
    text = render_model_card(ModelCardInfo(strategy="mono", languages=["en"]), [])
    assert "alpha (probability" not in text and "monolingual (X-X-mono)" in text


def test_report_loading_errors_are_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_report(tmp_path / "missing_metrics.json")
    with pytest.raises(ValueError, match="missing"):
        load_report({"languages": ["en"]})
    assert load_report(_write_report(tmp_path, heatmap=False)).heatmap is None
    assert build_eval_results([load_report({"name": "x", "metrics": {"unknown": 1.0}})]) == []


def test_templates_are_found_from_the_checkout_and_can_be_overridden(tmp_path, monkeypatch):
    assert (
        find_template("model_card.md")
        == Path(__file__).resolve().parents[1] / "model_cards" / "model_card.md"
    )
    (tmp_path / "model_card.md").write_text("---\n{{ card_data }}\n---\n\nCustom {{ model_name }}\n")
    monkeypatch.setenv("ST_HYBRID_CARD_TEMPLATES", str(tmp_path))
    assert render_model_card(_info(), [], repo_id="user/x").rstrip().endswith("Custom user/x")
    with pytest.raises(FileNotFoundError, match="ST_HYBRID_CARD_TEMPLATES"):
        find_template("nope.md")


# ---------------------------------------------------------------------------------------------------------------
# Dataset card
# ---------------------------------------------------------------------------------------------------------------
def _pairs():
    from datasets import Dataset

    return Dataset.from_dict(
        {
            "query": [f"q{i}" for i in range(7)],
            "passage": [f"p{i}" for i in range(7)],
            "query_language": ["en", "en", "de", "de", "ar", "en", "en"],
            "passage_language": ["en", "de", "de", "en", "en", "ar", "de"],
            "parallel_id": ["0", "0", "0", "1", "1", "2", "3"],
            "source": ["xquad-r"] * 5 + ["tatoeba"] * 2,
        }
    )


def test_dataset_statistics_and_card(tmp_path):
    from huggingface_hub import DatasetCard, DatasetCardData

    stats = dataset_statistics(_pairs())
    assert stats["per_pair"] == {"ar-en": 1, "de-de": 1, "de-en": 1, "en-ar": 1, "en-de": 2, "en-en": 1}
    assert stats["per_language"] == {"ar": 2, "de": 4, "en": 6}
    assert (stats["mono_rows"], stats["cross_rows"], stats["num_parallel_ids"]) == (2, 5, 4)

    info = DatasetCardInfo(pretty_name="XQuAD-R pairs", license="cc-by-sa-4.0", source="XQuAD-R (Roy et al., 2020)",
                           how_built="Every ordered language pair of each parallel question.",
                           source_datasets=["google/xquad"])  # fmt: skip
    extra = {
        "configs": [{"config_name": "default", "data_files": [{"split": "train", "path": "data/train-*"}]}]
    }
    text = render_dataset_card(info, stats, repo_id="user/pairs", extra_metadata=extra)
    data = DatasetCard(text).data
    assert isinstance(data, DatasetCardData)
    assert data.language == ["ar", "de", "en"] and data.license == "cc-by-sa-4.0"
    assert data.size_categories == "n<1K" and data.multilinguality == "multilingual"
    assert data.to_dict()["configs"] == extra["configs"]
    assert {row[0]: row[1] for row in _table_rows(text, "| Pair | Rows |")} == {
        k: str(v) for k, v in stats["per_pair"].items()
    }
    assert {row[0]: row[1] for row in _table_rows(text, "| Language | Rows |")} == {
        "ar": "2",
        "de": "4",
        "en": "6",
    }
    assert {row[0]: row[1] for row in _table_rows(text, "| Source | Rows |")} == {
        "tatoeba": "2",
        "xquad-r": "5",
    }
    assert "Every ordered language pair" in text and 'load_dataset("user/pairs")' in text


def test_dataset_dict_and_parallel_columns_are_counted():
    from datasets import Dataset, DatasetDict

    parallel = Dataset.from_dict({"text": ["a", "b", "c"], "language": ["en", "de", "de"]})
    stats = dataset_statistics(DatasetDict({"train": parallel, "test": parallel.select([0])}))
    assert stats["splits"] == {"train": 3, "test": 1} and stats["num_rows"] == 4
    assert stats["per_language"] == {"de": 2, "en": 2} and stats["per_pair"] == {}
