"""Property tests of HybridBatchSampler on synthetic pairs (many languages, fast)."""

from __future__ import annotations

import re
from collections import Counter

import numpy as np
import pytest
from accelerate.data_loader import BatchSamplerShard
from datasets import Dataset

from st_hybrid.sampler import HybridBatchSampler, PairMetadata, _Pool, detect_num_processes


def make_sampler(dataset, *args, **kwargs) -> HybridBatchSampler:
    """A sampler over pairs that still carry their metadata (standalone use: metadata passed explicitly)."""
    kwargs.setdefault("metadata", dataset)
    return HybridBatchSampler(dataset, *args, **kwargs)


def make_pairs(
    languages=("en", "de", "fr", "es"),
    num_ids=96,
    cross_partners=2,
    include_mono=True,
    ids_per_language=None,
    sources=None,
    seed=0,
) -> Dataset:
    """Pairs like st_hybrid.data.build_training_pairs: per (id, language) one mono row + k cross rows."""
    rng = np.random.default_rng(seed)
    columns = {
        k: [] for k in ("query", "passage", "query_language", "passage_language", "parallel_id", "source")
    }
    for li, lang in enumerate(languages):
        count = ids_per_language[li] if ids_per_language else num_ids
        for i in range(count):
            source = sources[i % len(sources)] if sources else "default"
            others = [other for other in languages if other != lang]
            partners = list(rng.choice(others, size=min(cross_partners, len(others)), replace=False))
            for passage_lang in ([lang] if include_mono else []) + partners:
                columns["query"].append(f"question {i} in {lang}")
                columns["passage"].append(f"answer {i} in {passage_lang}")
                columns["query_language"].append(lang)
                columns["passage_language"].append(str(passage_lang))
                columns["parallel_id"].append(f"{source}-{i}")
                columns["source"].append(source)
    return Dataset.from_dict(columns)


def table(dataset: Dataset) -> dict[str, np.ndarray]:
    return {
        name: np.asarray(dataset[name])
        for name in ("query_language", "passage_language", "parallel_id", "source")
    }


def epoch_batches(sampler: HybridBatchSampler, epoch: int = 0) -> list[list[int]]:
    sampler.set_epoch(epoch)
    return list(sampler)


def is_mono(cols, batch) -> bool:
    ql, pl = cols["query_language"][batch], cols["passage_language"][batch]
    return bool((ql == pl).all() and len(set(ql)) == 1)


def is_cross(cols, batch) -> bool:
    return bool((cols["query_language"][batch] != cols["passage_language"][batch]).all())


@pytest.fixture(scope="module")
def pairs() -> Dataset:
    return make_pairs()


@pytest.fixture(scope="module")
def cols(pairs) -> dict[str, np.ndarray]:
    return table(pairs)


# -- batch purity --------------------------------------------------------------------------------
@pytest.mark.parametrize("num_processes", [1, 2, 4])
@pytest.mark.parametrize("strategy", ["hybrid", "mono", "cross", "mixed"])
def test_batches_have_the_strategy_type(pairs, cols, strategy, num_processes):
    sampler = make_sampler(pairs, 8, True, strategy=strategy, alpha=0.5, num_processes=num_processes)
    batches = epoch_batches(sampler)
    kinds = []
    for batch in batches:
        mono, cross = is_mono(cols, batch), is_cross(cols, batch)
        if strategy == "mono":
            assert mono
        elif strategy == "cross":
            assert cross
        elif strategy == "hybrid":
            assert mono or cross
        else:  # mixed: exactly round(alpha * B) monolingual rows, the rest cross-lingual
            same = cols["query_language"][batch] == cols["passage_language"][batch]
            assert same.sum() == 4
        kinds.append("mono" if mono else "cross" if cross else "mixed")
    if strategy == "hybrid":
        assert {"mono", "cross"} <= set(kinds)
    # plan_epoch reports the same kinds as the rows show
    planned = sampler.plan_epoch(0)[1]
    assert [{0: "mono", 1: "cross", 2: "mixed"}[k] for k in planned] == kinds


def test_one_pair_per_batch(pairs, cols):
    sampler = make_sampler(pairs, 4, True, strategy="cross", one_pair_per_batch=True, num_processes=1)
    batches = epoch_batches(sampler)
    pairs_seen = set()
    for batch in batches:
        pair = set(zip(cols["query_language"][batch], cols["passage_language"][batch]))
        assert len(pair) == 1 and is_cross(cols, batch)
        pairs_seen |= pair
    assert len(pairs_seen) > 4
    # with 2 processes the whole step group (both batches) holds that one pair
    two = make_sampler(pairs, 4, True, strategy="cross", one_pair_per_batch=True, num_processes=2)
    batches = epoch_batches(two)
    for start in range(0, len(batches), 2):
        group = np.concatenate(batches[start : start + 2])
        assert len(set(zip(cols["query_language"][group], cols["passage_language"][group]))) == 1
    # by default (mixed pairs) batches do mix pairs
    default = epoch_batches(make_sampler(pairs, 8, True, strategy="cross", num_processes=1))
    assert any(len(set(zip(cols["query_language"][b], cols["passage_language"][b]))) > 1 for b in default)


# -- parallel ids, full batches, length ---------------------------------------------------------
@pytest.mark.parametrize("num_processes", [1, 2, 4])
@pytest.mark.parametrize("strategy", ["hybrid", "mono", "cross", "mixed"])
def test_no_parallel_id_twice_in_a_step_group(strategy, num_processes):
    # All partners: every id has 6 * 6 rows, so cross batches would collide without the dealing.
    pairs = make_pairs(languages=("en", "de", "fr", "es", "ar", "zh"), num_ids=64, cross_partners=5)
    cols = table(pairs)
    sampler = make_sampler(pairs, 8, True, strategy=strategy, num_processes=num_processes, seed=3)
    for epoch in range(3):
        batches = epoch_batches(sampler, epoch)
        assert len(batches) == len(sampler) and len(batches) % num_processes == 0
        assert all(len(batch) == 8 for batch in batches)
        for start in range(0, len(batches), num_processes):
            group = np.concatenate(batches[start : start + num_processes])
            assert len(set(cols["parallel_id"][group])) == len(group)


@pytest.mark.parametrize("seed", range(6))
def test_dealing_never_repeats_an_id_in_a_group(seed):
    """Stress the dealing: skewed multiplicities, ids straddling rounds, several passes."""
    rng = np.random.default_rng(seed)
    counts = rng.integers(1, 40, size=120)
    parallel_id = np.repeat(np.arange(len(counts)), counts)
    rows = rng.permutation(len(parallel_id))
    pool = _Pool.build(1, 0, "test", rows, parallel_id)
    group_size = int(rng.integers(4, 40))
    capacity = pool.capacity(group_size)
    assert capacity > 0
    groups = pool.deal(capacity * 2 + 3, group_size, rng)
    assert groups.shape == (capacity * 2 + 3, group_size)
    for group in groups:
        assert len(set(parallel_id[group])) == group_size
    # one pass uses each row at most once
    first_pass = groups[:capacity].ravel()
    assert len(set(first_pass)) == len(first_pass)


def test_len_equals_iteration_and_documented_epoch_length(pairs, cols):
    n_mono = int((cols["query_language"] == cols["passage_language"]).sum())
    n_cross = len(pairs) - n_mono
    expected = {"hybrid": len(pairs), "mixed": len(pairs), "mono": n_mono, "cross": n_cross}
    for strategy, eligible in expected.items():
        for w in (1, 2, 3):
            sampler = make_sampler(pairs, 8, False, strategy=strategy, num_processes=w)
            assert len(sampler) == w * (eligible // (8 * w))
            for epoch in range(2):
                assert len(epoch_batches(sampler, epoch)) == len(sampler)


# -- determinism ---------------------------------------------------------------------------------
def test_deterministic_in_seed_and_epoch(pairs):
    def make(seed):
        return make_sampler(pairs, 8, True, seed=seed, num_processes=1, generator=None)

    a, b = make(7), make(7)
    assert epoch_batches(a, 0) == epoch_batches(b, 0)
    assert epoch_batches(a, 1) == epoch_batches(b, 1)
    assert epoch_batches(a, 0) != epoch_batches(a, 1)  # set_epoch changes the order
    assert epoch_batches(a, 1) == epoch_batches(a, 1)  # and is repeatable
    assert epoch_batches(make(8), 0) != epoch_batches(a, 0)


def test_torch_generator_state_does_not_matter(pairs):
    import torch

    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(999)
    s1 = make_sampler(pairs, 8, True, generator=g1, seed=5, num_processes=1)
    s2 = make_sampler(pairs, 8, True, generator=g2, seed=5, num_processes=1)
    assert list(s1) == list(s2)


# -- coverage ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("strategy", "alpha"),
    [("mono", 0.5), ("cross", 0.5), ("hybrid", 1 / 3), ("hybrid", 0.0), ("hybrid", 1.0)],
)
def test_every_row_once_when_sizes_divide(pairs, cols, strategy, alpha):
    """4 languages x 96 ids, 1 mono + 2 cross rows each: 384 mono, 768 cross rows; B=8 divides all."""
    sampler = make_sampler(
        pairs, 8, True, strategy=strategy, alpha=alpha, language_weighting="size", num_processes=1
    )
    for epoch in range(2):
        seen = np.concatenate(epoch_batches(sampler, epoch))
        mono = cols["query_language"] == cols["passage_language"]
        if strategy == "mono" or alpha == 1.0:
            expected = np.flatnonzero(mono) if strategy == "mono" else None
        elif strategy == "cross" or alpha == 0.0:
            expected = np.flatnonzero(~mono) if strategy == "cross" else None
        else:
            expected = np.arange(len(pairs))
        if expected is not None:
            assert sorted(seen.tolist()) == expected.tolist()
        else:
            # alpha in {0, 1} with all rows eligible: one side only, reused as needed, each pass complete
            counts = Counter(seen.tolist())
            assert len(seen) == len(pairs)
            side = np.flatnonzero(mono if alpha == 1.0 else ~mono)
            assert set(counts) == set(side.tolist())
            assert max(counts.values()) - min(counts.values()) <= 1


def test_mixed_uses_every_row_once_when_sizes_divide(pairs, cols):
    """alpha=1/3, B=6: 2 mono + 4 cross rows per batch; ids are halved per epoch and both halves serve."""
    sampler = make_sampler(pairs, 6, True, strategy="mixed", alpha=1 / 3, num_processes=1)
    for epoch in range(2):
        batches = epoch_batches(sampler, epoch)
        seen = np.concatenate(batches)
        assert sorted(seen.tolist()) == list(range(len(pairs)))
        for batch in batches:
            assert (cols["query_language"][batch] == cols["passage_language"][batch]).sum() == 2


# -- weights -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("weighting", "expected"),
    [
        ("uniform", [0.25, 0.25, 0.25, 0.25]),
        ("size", [400 / 750, 200 / 750, 100 / 750, 50 / 750]),
        ("temperature", list(np.sqrt([400, 200, 100, 50]) / np.sqrt([400, 200, 100, 50]).sum())),
    ],
)
def test_language_weighting(weighting, expected):
    pairs = make_pairs(
        languages=("en", "de", "fr", "es"), ids_per_language=[400, 200, 100, 50], cross_partners=0
    )
    cols = table(pairs)
    sampler = make_sampler(
        pairs,
        10,
        True,
        strategy="mono",
        language_weighting=weighting,
        temperature=2.0,
        num_processes=1,
        seed=1,
    )
    counts = Counter()
    for epoch in range(10):
        counts.update(cols["query_language"][batch[0]] for batch in epoch_batches(sampler, epoch))
    total = sum(counts.values())
    observed = [counts[lang] / total for lang in ("en", "de", "fr", "es")]
    np.testing.assert_allclose(observed, expected, atol=0.01)


def test_uniform_weighting_with_fewer_groups_than_languages_is_unbiased():
    """Rounding is random per epoch: with 60 languages and ~20 mono groups each language still gets its share."""
    languages = tuple(f"l{i:02d}" for i in range(60))
    pairs = make_pairs(languages=languages, num_ids=8, cross_partners=0)
    cols = table(pairs)
    sampler = make_sampler(pairs, 8, True, strategy="mono", num_processes=1, seed=0)
    assert len(sampler) == 60
    counts = Counter()
    for epoch in range(40):
        counts.update(cols["query_language"][batch[0]] for batch in epoch_batches(sampler, epoch))
    assert set(counts) == set(languages)
    assert max(counts.values()) - min(counts.values()) <= 1  # systematic rounding: each exactly 40 +- 1


@pytest.mark.parametrize("alpha", [0.2, 0.5, 0.8])
def test_alpha_is_the_share_of_mono_batches(pairs, cols, alpha):
    sampler = make_sampler(pairs, 4, True, alpha=alpha, num_processes=1, seed=2)
    shares, first_half = [], []
    for epoch in range(8):
        flags = [is_mono(cols, b) for b in epoch_batches(sampler, epoch)]
        shares.append(np.mean(flags))
        first_half.append(np.mean(flags[: len(flags) // 2]))
    assert all(abs(share - alpha) <= 1 / len(sampler) for share in shares)  # exact up to rounding
    assert abs(np.mean(first_half) - alpha) < 0.05  # and spread over the epoch, not front-loaded


def test_sources_one_per_batch_in_proportion_to_size():
    a = make_pairs(num_ids=144, sources=["squad"], seed=1)
    b = make_pairs(num_ids=48, sources=["wiki"], seed=2)
    from datasets import concatenate_datasets

    pairs = concatenate_datasets([a, b])
    cols = table(pairs)
    sampler = make_sampler(pairs, 8, True, num_processes=2, seed=0)
    counts = Counter()
    for epoch in range(5):
        batches = epoch_batches(sampler, epoch)
        for start in range(0, len(batches), 2):
            group = np.concatenate(batches[start : start + 2])
            assert len(set(cols["source"][group])) == 1  # one source per step group
            counts[cols["source"][group[0]]] += 1
    assert counts["squad"] / sum(counts.values()) == pytest.approx(0.75, abs=0.01)


def test_hybrid_with_a_monolingual_only_source():
    """Like the paper's English-only sets (Mr.TyDi, MFAQ): that source gives mono batches only."""
    from datasets import concatenate_datasets

    multi = make_pairs(num_ids=96, sources=["lareqa"])
    english = make_pairs(languages=("en",), num_ids=192, cross_partners=0, sources=["mrtydi"])
    pairs = concatenate_datasets([multi, english])
    cols = table(pairs)
    sampler = make_sampler(pairs, 8, True, alpha=0.5, num_processes=1, seed=0)
    kinds = Counter()
    for batch in epoch_batches(sampler):
        source = cols["source"][batch[0]]
        assert (cols["source"][batch] == source).all()
        kinds[source, "mono" if is_mono(cols, batch) else "cross" if is_cross(cols, batch) else "x"] += 1
    assert kinds["mrtydi", "cross"] == 0 and kinds["mrtydi", "mono"] == 192 // 8
    assert kinds["lareqa", "mono"] == kinds["lareqa", "cross"] == 1152 // 8 // 2
    assert sum(kinds.values()) == len(sampler)


# -- multi-process: accelerate's real BatchSamplerShard -------------------------------------------
@pytest.mark.parametrize("num_processes", [2, 4])
@pytest.mark.parametrize("strategy", ["hybrid", "mono", "cross", "mixed"])
def test_batch_sampler_shard_gives_same_type_disjoint_steps(pairs, cols, strategy, num_processes):
    sampler = make_sampler(pairs, 8, True, strategy=strategy, num_processes=num_processes, seed=4)
    sampler.set_epoch(1)
    shards = [
        list(BatchSamplerShard(sampler, num_processes=num_processes, process_index=rank, even_batches=False))
        for rank in range(num_processes)
    ]
    assert all(len(shard) == len(sampler) // num_processes for shard in shards)
    assert [batch for step in zip(*shards) for batch in step] == list(sampler)  # nothing lost or padded
    for step in zip(*shards):
        rows = np.concatenate(step)
        assert len(set(rows)) == len(rows)  # disjoint shards
        assert len(set(cols["parallel_id"][rows])) == len(rows)  # gather_across_devices safe
        if strategy == "mixed":
            assert (
                len({int((cols["query_language"][b] == cols["passage_language"][b]).sum()) for b in step})
                == 1
            )
        else:
            kinds = {"mono" if is_mono(cols, b) else "cross" if is_cross(cols, b) else "other" for b in step}
            assert len(kinds) == 1 and "other" not in kinds
            if kinds == {"mono"}:  # the step is one global monolingual batch
                assert len(set(cols["query_language"][rows])) == 1
    if strategy in ("mono", "cross"):  # no reuse inside these epochs: shards are disjoint over the epoch
        every = np.concatenate([np.concatenate(shard) for shard in shards])
        assert len(set(every)) == len(every)


def test_num_processes_is_detected(pairs, monkeypatch):
    from accelerate.state import PartialState

    monkeypatch.setattr(PartialState, "_shared_state", {})
    monkeypatch.setenv("WORLD_SIZE", "4")
    assert detect_num_processes() == 4
    sampler = make_sampler(pairs, 8, True)
    assert sampler.num_processes == 4 and len(sampler) % 4 == 0
    monkeypatch.delenv("WORLD_SIZE")
    assert make_sampler(pairs, 8, True).num_processes == 1


# -- metadata input ------------------------------------------------------------------------------
def test_metadata_given_separately_and_after_select(pairs):
    texts = pairs.remove_columns(["query_language", "passage_language", "parallel_id", "source"])
    direct = make_sampler(pairs, 8, True, num_processes=1, seed=1)
    separate = make_sampler(texts, 8, True, num_processes=1, seed=1, metadata=table(pairs))
    from_dataset = make_sampler(texts, 8, True, num_processes=1, seed=1, metadata=pairs)
    assert list(direct) == list(separate) == list(from_dataset)
    shuffled = pairs.shuffle(seed=0).select(range(500))  # an indices mapping: read through it
    meta = PairMetadata.from_dataset(shuffled)
    assert [meta.languages[c] for c in meta.query_language] == shuffled["query_language"]
    parallel_ids = np.asarray(shuffled["parallel_id"])
    assert (parallel_ids[:, None] == parallel_ids[None, :]).sum() == (
        meta.parallel_id[:, None] == meta.parallel_id[None, :]
    ).sum()


# -- errors name the fix ---------------------------------------------------------------------------
def _error(match: str, *args, **kwargs):
    with pytest.raises(ValueError, match=match):
        make_sampler(*args, **kwargs)


def test_errors_name_the_fix(pairs):
    _error(
        r"Unknown strategy 'both'; choose one of \['hybrid', 'mono', 'cross', 'mixed'\]",
        pairs,
        8,
        True,
        strategy="both",
    )
    _error(r"alpha must be in \[0, 1\]", pairs, 8, True, alpha=1.5)
    _error(r"alpha must be in \[0, 1\]", pairs, 8, True, alpha=-0.1)
    _error(r"Unknown language_weighting 'zipf'", pairs, 8, True, language_weighting="zipf")
    _error(r"temperature must be > 0", pairs, 8, True, language_weighting="temperature", temperature=0)
    texts = pairs.remove_columns(["passage_language", "parallel_id"])
    _error(
        re.escape("missing: ['passage_language', 'parallel_id']") + r".*build_training_pairs",
        texts,
        8,
        True,
    )
    english = make_pairs(languages=("en",), num_ids=64)
    _error(r"at least 2 languages; found only \['en'\].*strategy='mono'", english, 8, True, strategy="cross")
    _error(r"at least 2 languages.*alpha=1", english, 8, True, strategy="hybrid")
    assert len(make_sampler(english, 8, True, strategy="mono", num_processes=1)) == 8
    mono_only = make_pairs(cross_partners=0)
    _error(
        r"needs cross-lingual rows.*there are none.*cross_partners >= 1", mono_only, 8, True, strategy="cross"
    )
    cross_only = make_pairs(include_mono=False)
    _error(r"monolingual rows.*include_mono=True", cross_only, 8, True, strategy="mono")
    _error(
        r"batch_size 64 x 4 process\(es\) = 256 rows per step, but the dataset has only 100 rows",
        make_pairs(num_ids=25, cross_partners=0),
        64,
        True,
        strategy="mono",
        num_processes=4,
    )
    small = make_pairs(ids_per_language=[96, 96, 96, 5])
    _error(r"mono 'es'.*5 positive groups.*drop_small_pools=True", small, 8, True, num_processes=1)
    with pytest.raises(ValueError, match="metadata has 10 rows but the dataset has"):
        make_sampler(pairs, 8, True, metadata={k: v[:10] for k, v in table(pairs).items()})


def test_drop_small_pools_skips_them(cols):
    small = make_pairs(ids_per_language=[96, 96, 96, 5])
    small_cols = table(small)
    sampler = make_sampler(small, 8, True, num_processes=1, drop_small_pools=True)
    for batch in epoch_batches(sampler):
        if is_mono(small_cols, batch):
            assert small_cols["query_language"][batch[0]] != "es"


def test_build_and_epoch_scale_linearly_and_fast():
    """100k rows / 50 languages: building and planning stay far below a second (the benchmark does 1M)."""
    import time

    rng = np.random.default_rng(0)
    n_ids, n_lang = 1000, 50
    pid = np.repeat(np.arange(n_ids), n_lang * 2)
    q = np.tile(np.repeat(np.arange(n_lang), 2), n_ids)
    p = q.copy()
    p[1::2] = (q[1::2] + rng.integers(1, n_lang, size=len(q) // 2)) % n_lang
    meta = PairMetadata.from_columns({"query_language": q, "passage_language": p, "parallel_id": pid})
    start = time.perf_counter()
    sampler = make_sampler(None, 64, True, num_processes=1, metadata=meta)
    batches = list(sampler)
    elapsed = time.perf_counter() - start
    assert len(batches) == len(pid) // 64
    assert elapsed < 2.0, elapsed


# -- positive groups: no shared text, answer or translation in a step ------------------------------
def test_positive_groups_join_ids_that_share_a_text_an_answer_or_a_negative():
    meta = PairMetadata.from_columns(
        {
            "query_language": ["en"] * 6,
            "passage_language": ["en"] * 6,
            "parallel_id": ["a", "b", "c", "d", "e", "f"],
            "answer_id": ["s1", "s2", "s2", "s3", "s4", "s5"],  # b and c: one answer sentence
            "query": ["q a", "q b", "q c", "q d", "p a", "q f"],  # e's query is a's passage
            "passage": ["p a", "p b", "p c", "p d", "p e", "p f"],
            "negative": ["x", "x", "x", "p f", "y", "z"],  # d's negative is f's passage; a-c share only "x"
        }
    )
    group = meta.group.tolist()
    assert group[0] == group[4]  # a query equal to another row's passage
    assert group[1] == group[2]  # the same answer sentence
    assert group[3] == group[5]  # a hard negative that is another row's positive
    assert len({group[0], group[1], group[3]}) == 3  # a shared negative alone joins nothing
    stats = meta.group_stats()
    assert stats == {
        "rows": 6, "ids": 6, "groups": 3, "ids_joined": 6, "largest_group_ids": 2, "largest_group_rows": 2,
    }  # fmt: skip
    # Without texts or answers the groups are the parallel ids.
    plain = PairMetadata.from_columns({k: v for k, v in table(make_pairs(num_ids=8)).items()})
    assert (plain.group == plain.parallel_id).all()


def _texts_repeat(pairs, batch) -> bool:
    return len(set(pairs["query"][b] for b in batch)) < len(batch) or len(
        set(pairs["passage"][b] for b in batch)
    ) < len(batch)


@pytest.fixture(scope="module")
def xquad_pairs(shared_data):
    from st_hybrid.data import build_training_pairs, load_lareqa

    return build_training_pairs(load_lareqa(shared_data / "xquad-r"))


@pytest.mark.parametrize("strategy", ["mono", "hybrid", "cross"])
def test_xquad_r_batches_never_repeat_a_text_or_an_answer(xquad_pairs, strategy):
    """Several XQuAD-R questions share an answer sentence: before grouping 39% / 23% / 5.5% of batches repeated one."""
    from st_hybrid.trainer import split_metadata

    texts, meta = split_metadata(xquad_pairs)  # as HybridTrainer sees them
    assert meta.group_stats()["ids_joined"] > 0
    queries, passages = np.asarray(xquad_pairs["query"]), np.asarray(xquad_pairs["passage"])
    answers, pid = np.asarray(xquad_pairs["answer_id"]), np.asarray(xquad_pairs["parallel_id"])
    sampler = HybridBatchSampler(texts, 32, True, strategy=strategy, num_processes=1, seed=0, metadata=meta)
    batches = np.asarray(list(sampler))
    assert len(batches) == len(sampler) > 0
    for batch in batches:
        assert len(set(queries[batch])) == 32 and len(set(passages[batch])) == 32
        assert len(set(answers[batch])) == 32 and len(set(pid[batch])) == 32
    # Translations too: no two rows of a batch are linked through an answer sentence and a parallel id.
    group_of_answer = dict(zip(answers.tolist(), meta.group.tolist()))
    for batch in batches:
        assert len({group_of_answer[a] for a in answers[batch]}) == 32


def test_tatoeba_shared_english_sentences_never_meet_in_a_step(shared_data):
    """'I have two cats.' is the English side of 47 Tatoeba pair ids."""
    from st_hybrid.data import build_training_pairs, load_tatoeba

    pairs = build_training_pairs(load_tatoeba(shared_data / "tatoeba"))
    sampler = make_sampler(pairs, 64, True, strategy="cross", num_processes=2, seed=1)
    assert sampler.metadata.group_stats()["largest_group_ids"] >= 47
    queries, passages = np.asarray(pairs["query"]), np.asarray(pairs["passage"])
    batches = np.asarray(list(sampler))
    for step in batches.reshape(-1, 128):
        texts = np.concatenate([queries[step], passages[step]])
        # a text may be one row's query and its own passage's translation never equals it: all distinct
        assert len(set(texts.tolist())) == len(texts)


def test_a_giant_group_neither_stalls_nor_starves_the_dealing():
    """One sentence shared by 200k rows and 40 other groups: each pass takes the giant group's next rows."""
    import time

    giant, others, batch_size = 200_000, 40, 32
    group = np.r_[np.zeros(giant, dtype=np.int64), np.arange(1, others + 1)]
    pool = _Pool.build(1, 0, "test", np.arange(len(group)), group)
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    steps = pool.deal(len(group) // batch_size, batch_size, rng)
    elapsed = time.perf_counter() - start
    assert elapsed < 10, elapsed  # a pass costs O(groups + rows dealt), not O(pool rows)
    assert all(len(set(group[step])) == batch_size for step in steps)
    used = steps.ravel()[group[steps.ravel()] == 0]
    assert len(used) > 0 and len(set(used.tolist())) == len(used)  # its rows in turn, none twice


def test_mixed_works_in_every_epoch_with_few_cross_ids():
    """40 bilingual + 200 English-only ids, batch 30: the random id halving failed 6 of 60 epochs."""
    from datasets import concatenate_datasets

    bilingual = make_pairs(languages=("en", "de"), num_ids=40, cross_partners=1, sources=["s"])
    english = make_pairs(languages=("en",), num_ids=240, cross_partners=0, sources=["s"]).select(
        range(40, 240)
    )
    pairs = concatenate_datasets([bilingual, english])
    cols = table(pairs)
    sampler = make_sampler(pairs, 30, True, strategy="mixed", alpha=0.5, num_processes=1, seed=0)
    for epoch in range(60):
        batches = sampler.plan_epoch(epoch)[0]
        assert len(batches) == len(sampler)
        for batch in batches:
            assert (cols["query_language"][batch] == cols["passage_language"][batch]).sum() == 15
            assert len(set(cols["parallel_id"][batch])) == 30
