"""How often hard-negative mining returns a false negative on parallel data: sentence-transformers vs st_hybrid.

Pairs: ``build_training_pairs(load_lareqa(MLQA-R))`` (mono + 2 cross partners per row). Both miners get the
same model, the same pairs and the same candidate pool (every distinct passage text), top-ranked negatives.
A mined negative is **false** when it is relevant to the anchor:

* *translation*: the answer sentence of the anchor's parallel id in some language (the positive's
  translation; the same id is the same question);
* *group text*: any query or passage text of the anchor's positive group (rows linked by a shared parallel
  id, answer sentence or text, transitively); this includes the translations.

sentence-transformers' ``mine_hard_negatives`` only excludes the anchor text's own positives;
``st_hybrid.mining.mine_hard_negatives`` excludes the whole group (so its rate must be 0), with negatives
from every language (``any``, the same pool as ST's) or from the passage's language (``passage``).
The checker here is an independent dict-based union-find, not the miner's own grouping code.

Embeddings are cached per text and prompt, so both miners rank with identical vectors and each text is
encoded once in the whole run (the first miner, sentence-transformers', pays for the encoding: its
``seconds`` include it, the others' do not). The default model encodes MLQA-R in seconds; with
multilingual-e5-small the full pool takes about 5.5 minutes on 2 CPU cores (``--max-ids`` for a subset).

The run also reports ``HybridBatchSampler``'s positive groups (its no-repeat unit) after mining: a negative
that is another row's passage joins the two rows' groups, so negatives mined from the training passages
chain all rows into one group; ``corpus only`` (every paragraph sentence that is nobody's query or passage,
``avoid_training_positives=True``) keeps the groups of the plain pairs.

Measured (2 CPU cores, full MLQA-R: 1,148 parallel ids, 7 languages, 4,199 distinct queries, 4,182 candidate
passages; 12,467 pairs with 2 cross partners; one top negative per pair): sentence-transformers returns a
false negative for 1.8% of triplets with static-multilingual-64d and 15.4% with multilingual-e5-small
(5.5% with static-multilingual-64d on mono pairs only, ``--cross-partners 0``); st_hybrid 0 in every case.
Sampler groups (static-multilingual-64d): 1,140 for the pairs, 1 after mining from the passages, 1,140 with
``corpus only``.

Usage:
    .venv/bin/python benchmarks/mining_false_negatives.py                      # static-multilingual-64d
    .venv/bin/python benchmarks/mining_false_negatives.py --model multilingual-e5-small --max-ids 600
    .venv/bin/python benchmarks/mining_false_negatives.py --model path/to/folder --num-negatives 3
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from datasets import Dataset
from sentence_transformers import SentenceTransformer
from sentence_transformers.util import mine_hard_negatives as st_mine_hard_negatives

from st_hybrid.data import build_training_pairs, load_lareqa
from st_hybrid.mining import lareqa_corpus, mine_hard_negatives, negative_columns
from st_hybrid.sampler import PairMetadata

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "mlqa-r"
OFFLINE_MODEL = ROOT.parent / "shared" / "tools" / "offline-model"


def resolve_model(name: str) -> str:
    """A local folder as is; otherwise a model name that ../shared/tools/offline-model builds."""
    if Path(name).is_dir():
        return name
    folder = subprocess.run(
        [str(OFFLINE_MODEL), sys.executable, name], check=True, capture_output=True, text=True
    ).stdout.strip()
    return folder.splitlines()[-1]


class CachedEncode:
    """Wrap ``model.encode`` so each (text, prompt, task) is encoded once across both miners."""

    def __init__(self, model: SentenceTransformer):
        self._encode, self._cache, self.encoded = model.encode, {}, 0
        model.encode = self

    def __call__(self, inputs, **kwargs):
        setting = repr(
            sorted(
                (k, v)
                for k, v in kwargs.items()
                if k in ("prompt", "prompt_name", "task", "normalize_embeddings")
            )
        )
        texts = [inputs] if isinstance(inputs, str) else list(inputs)
        missing = list(dict.fromkeys(t for t in texts if (setting, t) not in self._cache))
        if missing:
            kwargs = {**kwargs, "convert_to_numpy": True, "convert_to_tensor": False}
            for text, vector in zip(missing, self._encode(missing, **kwargs)):
                self._cache[setting, text] = vector
            self.encoded += len(missing)
        return np.stack([self._cache[setting, t] for t in texts])


class Relevance:
    """Per query text: the texts of its positive group and the answers of its parallel ids."""

    def __init__(self, pairs: Dataset):
        parent: dict[tuple, tuple] = {}

        def find(node):
            parent.setdefault(node, node)
            while parent[node] != node:
                parent[node] = parent[parent[node]]
                node = parent[node]
            return node

        keys_of_row = []
        for row in pairs:
            keys = [("id", row["parallel_id"]), ("text", row["query"]), ("text", row["passage"])]
            if row.get("answer_id") is not None:
                keys.append(("answer", row["answer_id"]))
            for key in keys[1:]:
                parent[find(key)] = find(keys[0])
            keys_of_row.append(keys)
        group_texts: dict[tuple, set[str]] = {}
        answers_of_id: dict[str, set[str]] = {}
        ids_of_query: dict[str, set[str]] = {}
        for row in pairs:
            group_texts.setdefault(find(("id", row["parallel_id"])), set()).update(
                (row["query"], row["passage"])
            )
            answers_of_id.setdefault(row["parallel_id"], set()).add(row["passage"])
            ids_of_query.setdefault(row["query"], set()).add(row["parallel_id"])
        self.group_texts = {q: group_texts[find(("text", q))] for q in ids_of_query}
        self.translations = {
            q: set().union(*(answers_of_id[i] for i in ids)) for q, ids in ids_of_query.items()
        }

    def count(self, queries: list[str], negatives: list[str]) -> dict[str, float]:
        translation = np.array([n in self.translations[q] for q, n in zip(queries, negatives)])
        group = np.array([n in self.group_texts[q] for q, n in zip(queries, negatives)])
        anchors = set(queries)
        return {
            "triplets": len(queries),
            "anchors": len(anchors),
            "false_translation": int(translation.sum()),
            "false_group": int(group.sum()),
            "false_translation_rate": float(translation.mean()) if len(queries) else 0.0,
            "false_group_rate": float(group.mean()) if len(queries) else 0.0,
            "anchors_with_false_negative": len({q for q, g in zip(queries, group) if g}),
        }


def subset_ids(parallel: Dataset, max_ids: int | None, seed: int) -> Dataset:
    """Keep a random subset of parallel ids (all their languages), or everything."""
    if max_ids is None:
        return parallel
    ids = sorted(set(parallel["parallel_id"]))
    keep = set(np.random.default_rng(seed).permutation(ids)[:max_ids].tolist())
    return parallel.filter(lambda batch: [i in keep for i in batch["parallel_id"]], batched=True)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--model", default="static-multilingual-64d", help="a folder or an offline-model name"
    )
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument(
        "--max-ids", type=int, default=None, help="random subset of parallel ids (all languages)"
    )
    parser.add_argument("--cross-partners", type=int, default=2)
    parser.add_argument("--num-negatives", type=int, default=1)
    parser.add_argument("--range-min", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, default=None, help="write the figures as JSON here")
    args = parser.parse_args(argv)

    model_path = resolve_model(args.model)
    model = SentenceTransformer(model_path, device="cpu")
    cache = CachedEncode(model)
    parallel = subset_ids(load_lareqa(args.data), args.max_ids, args.seed)
    pairs = build_training_pairs(parallel, cross_partners=args.cross_partners, seed=args.seed)
    relevance = Relevance(pairs)
    pool = {
        "data": Path(args.data).name,
        "parallel_ids": len(set(pairs["parallel_id"])),
        "pairs": len(pairs),
        "distinct_queries": len(set(pairs["query"])),
        "candidates": len(set(pairs["passage"])),
        "languages": sorted(set(pairs["passage_language"])),
    }
    print(f"model: {args.model} ({model_path})")
    print(f"pool: {json.dumps(pool)}")

    results = {
        "model": args.model,
        "pool": pool,
        "num_negatives": args.num_negatives,
        "range_min": args.range_min,
    }
    start = time.perf_counter()
    st_triplets = st_mine_hard_negatives(
        pairs.select_columns(["query", "passage"]),
        model,
        num_negatives=args.num_negatives,
        range_min=args.range_min,
        batch_size=args.batch_size,
        use_faiss=True,
        verbose=False,
    )
    results["sentence-transformers"] = {
        **relevance.count(st_triplets["query"], st_triplets["negative"]),
        "seconds": round(time.perf_counter() - start, 1),
    }
    corpus = lareqa_corpus(args.data, languages=sorted(set(parallel["language"])))
    pool["corpus_sentences"] = len(set(corpus["text"]))
    print(
        f"corpus (every paragraph sentence, for 'corpus only'): {pool['corpus_sentences']:,} distinct sentences"
    )
    training_texts = set(pairs["query"]) | set(pairs["passage"])
    results["sampler_groups"] = {"pairs": PairMetadata.from_dataset(pairs).group_stats()}
    configurations = [
        ("any", "passages", {}),
        ("passage", "passages", {}),
        ("passage", "corpus only", {"corpus": corpus, "avoid_training_positives": True}),
    ]
    for language, candidates, options in configurations:
        name = f"st_hybrid ({language}, {candidates})"
        start = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", UserWarning)
            mined = mine_hard_negatives(
                pairs,
                model,
                language=language,
                num_negatives=args.num_negatives,
                range_min=args.range_min,
                batch_size=args.batch_size,
                **options,
            )
        queries = [q for q in mined["query"] for _ in range(args.num_negatives)]
        negatives = [row[name] for row in mined for name in negative_columns(args.num_negatives)]
        results[name] = {
            **relevance.count(queries, negatives),
            "negatives_that_are_training_positives": sum(n in training_texts for n in negatives),
            "rows_dropped": len(pairs) - len(mined),
            "seconds": round(time.perf_counter() - start, 1),
            "warnings": [str(w.message) for w in caught],
        }
        results["sampler_groups"][name] = PairMetadata.from_dataset(mined).group_stats()
    results["texts_encoded"] = cache.encoded

    print(f"\n{'miner':34} {'triplets':>9} {'translation FN':>18} {'group FN':>18} {'anchors w/ FN':>14}")
    for name, row in results.items():
        if isinstance(row, dict) and "triplets" in row:
            print(
                f"{name:34} {row['triplets']:>9,} {row['false_translation']:>8,} ({row['false_translation_rate']:6.2%})"
                f" {row['false_group']:>8,} ({row['false_group_rate']:6.2%}) {row['anchors_with_false_negative']:>14,}"
            )
    print("\nHybridBatchSampler positive groups (the no-repeat unit) with the mined negatives:")
    for name, stats in results["sampler_groups"].items():
        print(f"  {name:34} {stats['groups']:>6,} groups, largest {stats['largest_group_rows']:,} rows")
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main()
