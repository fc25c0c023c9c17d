"""Model and dataset cards: sentence-transformers' card extended with st-hybrid's sections, metadata validates."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from st_hybrid.dataset_card import DatasetCardInfo, dataset_statistics, render_dataset_card
from st_hybrid.model_card import (
    CARD_STATE_FILE,
    ModelCardInfo,
    build_eval_results,
    find_template,
    load_report,
    render_model_card,
    write_model_card,
)

LANGUAGES = ["ar", "de", "en", "el"]  # el is not a training language below
# Headings sentence-transformers' own template writes for a trained model, and st-hybrid's.
ST_SECTIONS = ["## Model Details", "### Full Model Architecture", "## Usage", "## Evaluation", "## Training Details",
               "### Training Dataset", "#### Non-Default Hyperparameters", "### Training Logs",
               "### Framework Versions", "## Citation", "#### MultipleNegativesRankingLoss"]  # fmt: skip
HYBRID_SECTIONS = ["## Hybrid batch training (st-hybrid)", "### Training data", "## LAReQA evaluation",
                   "### Before / after: the base model vs this model", "### xquad-r: per language"]  # fmt: skip


def _report_dict(name: str = "xquad-r", scale: float = 1.0) -> dict:
    per_language = {
        lang: {
            "mono_map": (0.8111 + i / 100) * scale,
            "cross_map": (0.6222 + i / 100) * scale,
            "multi_map": (0.5333 + i / 100) * scale,
            "rank_distance": (250.44 + i) / scale,
            "multi_ndcg@10": (0.6444 + i / 100) * scale,
            "multi_recall@10": 0.4,
        }  # fmt: skip
        for i, lang in enumerate(LANGUAGES)
    }
    return {
        "name": name,
        "languages": LANGUAGES,
        "num_queries": 4760,  # the full XQuAD-R pool of these 4 languages
        "num_candidates": 4912,
        "metrics": {
            "mono_map": 0.8123 * scale,
            "cross_map": 0.6234 * scale,
            "multi_map": 0.5345 * scale,
            "rank_distance": 301.26 / scale,
            "multi_ndcg@10": 0.6456 * scale,
            "multi_recall@1": 0.3,
            "multi_mrr@10": 0.6012,
        },  # fmt: skip
        "per_language": per_language,
        "pair_map": {a: {b: 0.8 if a == b else 0.6 for b in LANGUAGES} for a in LANGUAGES},
    }


def _write_report(folder: Path, name: str = "xquad-r", heatmap: bool = True, scale: float = 1.0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}_metrics.json"
    path.write_text(json.dumps(_report_dict(name, scale)))
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


def _headings(text: str) -> list[str]:
    """Markdown headings of the card body, outside code fences and HTML comments."""
    body = re.sub(r"```.*?```|<!--.*?-->", "", text.split("\n---\n", 1)[1], flags=re.S)
    return [line.strip() for line in body.splitlines() if re.match(r"#{1,4} ", line)]


def _check_hub_metadata(text: str) -> None:
    """The checks ``ModelCard.validate`` cannot run offline (it posts to the Hub's /api/validate-yaml)."""
    import yaml
    from huggingface_hub import EvalResult, ModelCard, ModelCardData
    from huggingface_hub.repocard_data import model_index_to_eval_results

    card = ModelCard(text)  # parses the YAML block (raises on malformed metadata)
    assert isinstance(card.data, ModelCardData)
    metadata = yaml.safe_load(text.split("---\n")[1])
    rebuilt = ModelCardData(**metadata)  # huggingface_hub's own metadata parsing, model-index included
    assert rebuilt.library_name == "sentence-transformers" and rebuilt.pipeline_tag == "sentence-similarity"
    name, results = model_index_to_eval_results(metadata["model-index"])
    assert name and results and all(isinstance(r, EvalResult) for r in results)
    assert all(isinstance(r.metric_value, float) and r.metric_value == r.metric_value for r in results)
    assert len(results) == len(card.data.eval_results)


# ---------------------------------------------------------------------------------------------------------------
# A trained model: sentence-transformers' sections and ours, the same with and without the trainer
# ---------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_model_path):
    """A tiny model trained 4 steps with HybridTrainer and an evaluator, saved, then carded with the model."""
    from sentence_transformers import SentenceTransformer, SentenceTransformerTrainingArguments
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
    from test_sampler import make_pairs

    from st_hybrid.evaluation import LanguageAwareRetrievalEvaluator
    from st_hybrid.trainer import HybridTrainer

    root = tmp_path_factory.mktemp("trained")
    pairs = make_pairs(languages=("ar", "de", "en"), num_ids=24, cross_partners=1)
    texts = [f"answer {i} in {lang}" for i in range(24) for lang in ("ar", "de", "en", "el")]
    evaluator = LanguageAwareRetrievalEvaluator(
        queries={f"q{i}-{lang}": f"question {i} in {lang}" for i in range(24) for lang in ("ar", "de", "en", "el")},
        corpus={f"a{i}-{lang}": text for i, lang, text in
                [(i, lang, f"answer {i} in {lang}") for i in range(24) for lang in ("ar", "de", "en", "el")]},
        relevant_docs={f"q{i}-{lang}": [f"a{i}-{x}" for x in ("ar", "de", "en", "el")]
                       for i in range(24) for lang in ("ar", "de", "en", "el")},
        query_languages={f"q{i}-{lang}": lang for i in range(24) for lang in ("ar", "de", "en", "el")},
        corpus_languages={f"a{i}-{lang}": lang for i in range(24) for lang in ("ar", "de", "en", "el")},
        name="xquad-r", write_plot=True,
    )  # fmt: skip
    assert len(texts) == len(evaluator.candidate_ids)
    model = SentenceTransformer(tiny_model_path)
    args = SentenceTransformerTrainingArguments(
        output_dir=str(root / "run"), per_device_train_batch_size=8, max_steps=4, learning_rate=1e-4,
        logging_steps=1, eval_strategy="steps", eval_steps=2, save_strategy="no", use_cpu=True,
        disable_tqdm=True, report_to="none", seed=3,
    )  # fmt: skip
    trainer = HybridTrainer(model=model, args=args, train_dataset=pairs, loss=MultipleNegativesRankingLoss(model),
                            evaluator=evaluator)  # fmt: skip
    before = evaluator(model, output_path=str(root / "before"))
    trainer.train()
    trainer.save_model(str(root / "model"))
    evaluator(model, output_path=str(root / "after"))
    info = _info(train_datasets=["xquad-r"], hyperparameters={}, loss=None, num_training_pairs=None)
    readme = write_model_card(
        root / "model", info, [root / "after" / "xquad-r_metrics.json"], model=model, repo_id="user/tiny-hybrid",
        baseline_reports=[root / "before" / "xquad-r_metrics.json"], train_dataset=pairs,
    )  # fmt: skip
    return {"root": root, "readme": readme, "text": readme.read_text(), "pairs": pairs, "before": before}


def test_trained_card_holds_sentence_transformers_sections_and_ours(trained):
    text = trained["text"]
    headings = _headings(text)
    missing = [h for h in ST_SECTIONS + HYBRID_SECTIONS if h not in headings]
    assert not missing, missing
    # Ours on top: after the title and sentence-transformers' introduction, before its Model Details.
    assert headings.index("## Hybrid batch training (st-hybrid)") < headings.index("## Model Details")
    logs = _table_rows(text, "| Epoch")
    assert {"1", "2", "3", "4"} <= {row[1] for row in logs}  # training logs of the 4 steps
    assert "- `max_steps`: 4" in text and "- `learning_rate`: 0.0001" in text  # non-default hyperparameters
    assert re.search(r"- Sentence Transformers: \d", text) and re.search(r"- PyTorch: \d", text)
    assert 'model = SentenceTransformer("user/tiny-hybrid")' in text and "import st_hybrid" not in text
    assert "arXiv:2408.10536" in text and "2004.05484" in text and "1908.10084" in text
    # Training data: languages and pair counts from the pairs, the known license.
    pairs = trained["pairs"]
    cross = sum(q != p for q, p in zip(pairs["query_language"], pairs["passage_language"]))
    row = _table_rows(text, "| Dataset | Languages |")[0]
    assert row[:5] == [
        "xquad-r",
        "ar, de, en",
        f"{len(pairs):,}",
        f"{len(pairs) - cross} / {cross}",
        "cc-by-sa-4.0",
    ]
    # Languages seen and unseen, per-language table, heatmap shipped with the card.
    assert "| Evaluated languages not seen in training (†) | el |" in text
    assert "el †" in [r[0] for r in _table_rows(text, "| Language | Mono mAP")]
    assert (trained["root"] / "model" / "assets" / "xquad-r_pair_map.png").is_file()
    assert "(https://huggingface.co/user/tiny-hybrid/resolve/main/assets/xquad-r_pair_map.png)" in text
    # Before/after: the base model's numbers are the zero-shot evaluation.
    before_row = {r[0]: r[1] for r in _table_rows(text, "| xquad-r | Base model |")}
    before = json.loads((trained["root"] / "before" / "xquad-r_metrics.json").read_text())
    assert before_row["mAP (multi)"] == f"{before['metrics']['multi_map']:.4f}"


def test_trained_card_passes_hub_metadata_checks(trained):
    from huggingface_hub import ModelCard

    _check_hub_metadata(trained["text"])
    data = ModelCard(trained["text"]).data
    assert data.license == "mit"  # the base model's license, not a hard-coded default
    assert data.base_model == "intfloat/multilingual-e5-small" and data.language == ["ar", "de", "en"]
    assert {"st-hybrid", "hybrid-batches", "generated_from_trainer"} <= set(data.tags)
    # Our report replaces sentence-transformers' unlabeled entries for the same evaluator: no duplicates.
    keys = [(r.dataset_config, r.metric_type) for r in data.eval_results]
    assert len(keys) == len(set(keys))


def test_card_written_after_the_fact_has_the_same_sections(trained, tmp_path):
    from huggingface_hub import ModelCard

    from st_hybrid.cli import main

    folder = tmp_path / "model"
    shutil.copytree(trained["root"] / "model", folder)
    (folder / "README.md").unlink()
    assert main(["card", "model", str(folder), "--repo-id", "user/tiny-hybrid"]) == 0
    text = (folder / "README.md").read_text()
    assert _headings(text) == _headings(trained["text"])
    # The trainer's tags (generated_from_trainer, dataset_size, loss) survive a card written from the folder.
    assert ModelCard(text).data.tags == ModelCard(trained["text"]).data.tags
    assert _table_rows(text, "| Epoch") == _table_rows(trained["text"], "| Epoch")
    assert _table_rows(text, "| Dataset | Languages |") == _table_rows(
        trained["text"], "| Dataset | Languages |"
    )
    _check_hub_metadata(text)


# ---------------------------------------------------------------------------------------------------------------
# Cards of saved folders (no trainer record)
# ---------------------------------------------------------------------------------------------------------------
def test_tables_hold_the_report_numbers(tmp_path, tiny_model_path):
    report = _report_dict()
    text = render_model_card(
        _info(), [_write_report(tmp_path)], model_path=tiny_model_path, repo_id="user/hybrid"
    )

    summary = _table_rows(text, "| Benchmark |")
    m = report["metrics"]
    assert summary == [["xquad-r", "full", "4", "4760", "4912", f"{m['mono_map']:.4f}", f"{m['cross_map']:.4f}",
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
    assert "assets/xquad-r_pair_map.png)" in text


def test_training_facts_without_a_trainer_record(tiny_model_path):
    text = render_model_card(_info(), [], model_path=tiny_model_path, repo_id="user/hybrid")
    assert "| Batch strategy | `hybrid` — hybrid (mono + cross-lingual) |" in text
    assert "| alpha (probability of a monolingual batch) | 0.5 |" in text
    assert "| Language weighting | uniform over languages, datasets by size |" in text
    assert (
        "| `learning_rate` | `3e-05` |" in text
    )  # given hyperparameters shown when no trainer recorded them
    rows = {r[0]: r for r in _table_rows(text, "| Dataset | Languages |")}
    assert rows["[XQuAD-R pairs](https://huggingface.co/datasets/user/xquad-r-pairs)"][2] == "12,345"
    assert rows["Tatoeba"][4] == "CC BY 2.0 FR"
    assert 'model = SentenceTransformer("user/hybrid")' in text
    assert "No LAReQA evaluation report was attached" in text
    assert "### Framework Versions" in text and "## Model Details" in text
    _check_hub_metadata_without_results(text)


def _check_hub_metadata_without_results(text: str) -> None:
    from huggingface_hub import ModelCard

    data = ModelCard(text).data
    assert data.eval_results is None and data.library_name == "sentence-transformers"


def test_model_index_names_pools_and_round_trips(tmp_path, tiny_model_path):
    from huggingface_hub import ModelCard

    reports = [_write_report(tmp_path, "xquad-r"), _write_report(tmp_path, "mlqa-r")]
    text = render_model_card(_info(), reports, model_path=tiny_model_path, repo_id="user/hybrid")
    _check_hub_metadata(text)
    data = ModelCard(text).data
    assert data.datasets is None or "user/xquad-r-pairs" not in (data.datasets or [])  # not checked offline
    assert len(data.eval_results) == 2 * 5 * 5  # 2 reports x (all + 4 languages) x 5 metrics
    values = {(r.dataset_type, r.dataset_config, r.metric_type): r.metric_value for r in data.eval_results}
    assert values[("xquad-r", "full", "mono_map")] == 0.8123
    assert values[("mlqa-r", "subset", "rank_distance")] == 301.26  # fewer candidates than MLQA-R's
    assert values[("xquad-r", "full-de", "ndcg_at_10")] == pytest.approx(0.6544)
    names = {r.dataset_type: r.dataset_name for r in data.eval_results}
    assert names["xquad-r"] == "XQuAD-R (4 of 11 languages, full test set, 4,760 queries x 4,912 candidates)"


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
    assert "| xquad-r | full | 4 | 4760 | 4912 | 0.8123 |" in text
    assert 'SentenceTransformer("user/hybrid-st")' in text and "## Model Details" in text
    assert (tmp_path / "saved" / "assets" / "xquad-r_pair_map.png").is_file()
    assert (tmp_path / "saved" / CARD_STATE_FILE).is_file()
    assert len(ModelCard(text).data.eval_results) == 25


def test_strategy_and_alpha_are_validated(tiny_model_path):
    with pytest.raises(ValueError, match="Unknown strategy"):
        ModelCardInfo(strategy="random")
    with pytest.raises(ValueError, match="alpha"):
        ModelCardInfo(alpha=1.5)
    with pytest.raises(ValueError, match="Unknown model card field"):
        ModelCardInfo.from_dict({"learning_rate": 1e-5})
    with pytest.raises(ValueError, match="list of codes"):
        ModelCardInfo(languages="de")
    assert ModelCardInfo(strategy="cross").alpha is None
    text = render_model_card(ModelCardInfo(strategy="mono", languages=["en"]), [], model_path=tiny_model_path)
    assert "alpha (probability" not in text and "monolingual (X-X-mono)" in text


def test_merge_ratio_is_stated(tiny_model_path):
    text = render_model_card(_info(merge_ratio=0.4), [], model_path=tiny_model_path)
    assert "This model is a weight-space merge" in text and "r = 0.4" in text
    assert "merge" in __import__("huggingface_hub").ModelCard(text).data.tags
    assert "weight-space merge" not in render_model_card(_info(), [], model_path=tiny_model_path)


def test_report_loading_errors_are_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_report(tmp_path / "missing_metrics.json")
    with pytest.raises(ValueError, match="missing"):
        load_report({"languages": ["en"]})
    (tmp_path / "bad_metrics.json").write_text("{not json")
    with pytest.raises(ValueError, match="bad_metrics.json is not valid JSON"):
        load_report(tmp_path / "bad_metrics.json")
    assert load_report(_write_report(tmp_path, heatmap=False)).heatmap is None
    assert build_eval_results([load_report({"name": "x", "metrics": {"unknown": 1.0}})]) == []
    with pytest.raises(ValueError, match="model_path"):
        render_model_card(_info(), [])


def test_templates_are_package_data_and_can_be_overridden(tmp_path, monkeypatch, tiny_model_path):
    from importlib.resources import files

    found = find_template("model_card.md")
    assert found == Path(str(files("st_hybrid").joinpath("templates", "model_card.md")))
    assert find_template("hybrid_sections.md").is_file() and find_template("dataset_card.md").is_file()
    (tmp_path / "model_card.md").write_text("---\n{{ card_data }}\n---\n\nCustom {{ model_name }}\n")
    monkeypatch.setenv("ST_HYBRID_CARD_TEMPLATES", str(tmp_path))
    text = render_model_card(_info(model_name="user/x"), [], model_path=tiny_model_path)
    assert text.rstrip().endswith("Custom user/x")
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
