"""MultiPositiveRankingLoss: in-batch negatives with several positives per query (a question's answer in many languages).

In LAReQA's multilingual pool every translation of a question's answer is relevant, and the language bias
(rank distance) is how far apart those answers rank. ``MultipleNegativesRankingLoss`` trains one positive
per query; this loss trains ``num_positives`` at once (columns ``passage``, ``passage_2``, ... from
:func:`st_hybrid.data.add_parallel_positives`), each against the same negatives: every other text of the
batch (other rows' positives and negatives, and the row's own mined negatives). A row's positives are left
out of each other's softmax, so the answers in two languages never compete; each must beat the negatives,
among them a same-language look-alike when negatives are mined. With one positive it is MNRL.

``alignment_weight > 0`` adds a translation-alignment term at no extra encoding cost: each positive is also an
anchor that must retrieve the row's other positives (its translations) among the same negatives, so the answers
of one question move together in passage space whatever their language (what rank distance measures).

``positive_reduction="hardest"`` trains only each query's worst-scored positive (the answer in the language the
model disfavours for that query) instead of the mean over its positives: the worst-ranked relevant answer is
what rank distance counts.

Usage:
    >>> import tempfile
    >>> from sentence_transformers import SentenceTransformer
    >>> from st_hybrid.losses import MultiPositiveRankingLoss
    >>> from st_hybrid.testing import build_tiny_model
    >>> model = SentenceTransformer(build_tiny_model(tempfile.mkdtemp()))
    >>> loss = MultiPositiveRankingLoss(model, num_positives=2)
    >>> columns = [["who wrote it?", "wer schrieb es?"], ["She wrote it.", "Sie schrieb es."],
    ...            ["Ella lo escribió.", "Elle l'a écrit."]]  # query, passage, passage_2
    >>> features = [model.preprocess(texts) for texts in columns]
    >>> loss(features).item() > 0
    True
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from sentence_transformers.base.losses.merged_forward import embed_columns
from sentence_transformers.util import all_gather_with_grad, cos_sim, get_rank, similarity_fct_name
from torch import Tensor, nn

__all__ = ["POSITIVE_REDUCTIONS", "MultiPositiveRankingLoss"]

#: How a query's per-positive losses combine: their mean, or only the largest (its worst-scored positive).
POSITIVE_REDUCTIONS = ("mean", "hardest")


class MultiPositiveRankingLoss(nn.Module):
    """InfoNCE with in-batch negatives and ``num_positives`` positive columns per query.

    For query ``i`` and each of its positives ``p``: ``-log(exp(s_ip) / (exp(s_ip) + sum_n exp(s_in)))``,
    ``s = scale * similarity``, ``n`` over every candidate of the batch that is not one of ``i``'s positives;
    the loss is the mean over queries and positives (``positive_reduction="mean"``), or the mean over queries of
    each query's largest such term (``"hardest"``: its lowest-scored positive, as the negatives are shared).

    Args:
        model: The SentenceTransformer model.
        num_positives: How many columns after the query are positives (``passage``, ``passage_2``, ...);
            any further columns are the rows' negatives.
        scale: Inverse temperature (sentence-transformers' MNRL default, 20).
        similarity_fct: Similarity of two embedding matrices (default cosine).
        gather_across_devices: Score against the candidates of every process (``torch.distributed``).
        alignment_weight: Weight of the translation-alignment term (0: none). For each positive ``a`` of row
            ``i`` and each other positive ``b`` of it: ``-log(exp(s_ab) / (exp(s_ab) + sum_n exp(s_an)))``, ``n``
            over the same negatives as ``i``'s query; the term is the mean over those (a, b) pairs.
        positive_reduction: ``"mean"`` over a query's positives, or ``"hardest"``: only its worst-scored one.

    Raises:
        ValueError: ``num_positives < 1``, ``alignment_weight < 0``, an alignment term or ``"hardest"`` with one
            positive, or an unknown ``positive_reduction``; at call time, fewer columns than ``1 + num_positives``.
    """

    def __init__(
        self,
        model,
        num_positives: int = 2,
        scale: float = 20.0,
        similarity_fct=cos_sim,
        gather_across_devices: bool = False,
        alignment_weight: float = 0.0,
        positive_reduction: str = "mean",
    ) -> None:
        super().__init__()
        if num_positives < 1:
            raise ValueError(f"num_positives must be >= 1, got {num_positives}.")
        if alignment_weight < 0:
            raise ValueError(f"alignment_weight must be >= 0, got {alignment_weight}.")
        if alignment_weight and num_positives < 2:
            raise ValueError(
                "alignment_weight aligns a row's positives with each other and needs num_positives >= 2 "
                f"(got {num_positives}): add parallel positives or set alignment_weight 0."
            )
        if positive_reduction not in POSITIVE_REDUCTIONS:
            raise ValueError(
                f"positive_reduction must be one of {list(POSITIVE_REDUCTIONS)}, got {positive_reduction!r}."
            )
        if positive_reduction == "hardest" and num_positives < 2:
            raise ValueError(
                "positive_reduction 'hardest' picks the worst-scored of a query's positives and needs "
                f"num_positives >= 2 (got {num_positives}): add parallel positives or use 'mean'."
            )
        self.model = model
        self.num_positives = num_positives
        self.scale = scale
        self.similarity_fct = similarity_fct
        self.gather_across_devices = gather_across_devices
        self.alignment_weight = alignment_weight
        self.positive_reduction = positive_reduction

    def forward(self, sentence_features: Iterable[dict[str, Tensor]], labels: Tensor | None = None) -> Tensor:
        return self.compute_loss_from_embeddings(embed_columns(self.model, sentence_features), labels)

    def compute_loss_from_embeddings(self, embeddings: list[Tensor], labels: Tensor | None = None) -> Tensor:
        if len(embeddings) < 1 + self.num_positives:
            raise ValueError(
                f"MultiPositiveRankingLoss(num_positives={self.num_positives}) needs a query column and "
                f"{self.num_positives} positive column(s), got {len(embeddings)} column(s) in all."
            )
        queries, candidates = embeddings[0], embeddings[1:]
        batch_size = queries.size(0)
        offset = 0
        if self.gather_across_devices:
            candidates = [all_gather_with_grad(column) for column in candidates]
            offset = get_rank() * batch_size  # 0 when not distributed
        world_batch = candidates[0].size(0)
        everything = torch.cat(candidates)  # (columns * world, dim)
        # Row i's positives sit at column c * world_batch + offset + i, c < num_positives.
        rows = torch.arange(batch_size, device=queries.device)
        positive_index = (
            torch.arange(self.num_positives, device=queries.device)[None, :] * world_batch
            + (offset + rows)[:, None]
        )  # (batch, num_positives)
        terms = self._ranking_loss(self.similarity_fct(queries, everything) * self.scale, positive_index)
        if self.positive_reduction == "hardest":
            terms = terms.max(dim=1).values
        loss = terms.mean()
        if self.alignment_weight:
            loss = loss + self.alignment_weight * self._alignment_loss(everything, positive_index)
        return loss

    @staticmethod
    def _ranking_loss(scores: Tensor, positive_index: Tensor) -> Tensor:
        """``-log softmax`` of each positive against the candidates that are none of the row's positives."""
        positive_scores = scores.gather(1, positive_index)
        negative_lse = torch.logsumexp(scores.scatter(1, positive_index, float("-inf")), dim=1, keepdim=True)
        return torch.logaddexp(positive_scores, negative_lse) - positive_scores

    def _alignment_loss(self, everything: Tensor, positive_index: Tensor) -> Tensor:
        # Anchors are the local rows' positives, positive-major: anchor k = c * batch + i.
        batch_size = positive_index.size(0)
        anchor_index = positive_index.T.reshape(-1)
        scores = self.similarity_fct(everything[anchor_index], everything) * self.scale
        terms = self._ranking_loss(scores, positive_index.repeat(self.num_positives, 1))
        # An anchor scored against itself is no target: drop column c of anchor k = c * batch + i.
        columns = torch.arange(self.num_positives, device=terms.device)
        is_target = columns.repeat_interleave(batch_size)[:, None] != columns[None, :]
        return terms[is_target].mean()

    def get_config_dict(self) -> dict[str, Any]:
        return {
            "num_positives": self.num_positives,
            "scale": self.scale,
            "similarity_fct": similarity_fct_name(self.similarity_fct),
            "gather_across_devices": self.gather_across_devices,
            "alignment_weight": self.alignment_weight,
            "positive_reduction": self.positive_reduction,
        }
