"""MultiPositiveRankingLoss: in-batch negatives with several positives per query (a question's answer in many languages).

In LAReQA's multilingual pool every translation of a question's answer is relevant, and the language bias
(rank distance) is how far apart those answers rank. ``MultipleNegativesRankingLoss`` trains one positive
per query; this loss trains ``num_positives`` at once (columns ``passage``, ``passage_2``, ... from
:func:`st_hybrid.data.add_parallel_positives`), each against the same negatives: every other text of the
batch (other rows' positives and negatives, and the row's own mined negatives). A row's positives are left
out of each other's softmax, so the answers in two languages never compete; each must beat the negatives,
among them a same-language look-alike when negatives are mined. With one positive it is MNRL.

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

__all__ = ["MultiPositiveRankingLoss"]


class MultiPositiveRankingLoss(nn.Module):
    """InfoNCE with in-batch negatives and ``num_positives`` positive columns per query.

    For query ``i`` and each of its positives ``p``: ``-log(exp(s_ip) / (exp(s_ip) + sum_n exp(s_in)))``,
    ``s = scale * similarity``, ``n`` over every candidate of the batch that is not one of ``i``'s positives;
    the loss is the mean over queries and positives.

    Args:
        model: The SentenceTransformer model.
        num_positives: How many columns after the query are positives (``passage``, ``passage_2``, ...);
            any further columns are the rows' negatives.
        scale: Inverse temperature (sentence-transformers' MNRL default, 20).
        similarity_fct: Similarity of two embedding matrices (default cosine).
        gather_across_devices: Score against the candidates of every process (``torch.distributed``).

    Raises:
        ValueError: ``num_positives < 1``; at call time, fewer columns than ``1 + num_positives``.
    """

    def __init__(
        self,
        model,
        num_positives: int = 2,
        scale: float = 20.0,
        similarity_fct=cos_sim,
        gather_across_devices: bool = False,
    ) -> None:
        super().__init__()
        if num_positives < 1:
            raise ValueError(f"num_positives must be >= 1, got {num_positives}.")
        self.model = model
        self.num_positives = num_positives
        self.scale = scale
        self.similarity_fct = similarity_fct
        self.gather_across_devices = gather_across_devices

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
        scores = self.similarity_fct(queries, torch.cat(candidates)) * self.scale  # (batch, columns * world)
        # Row i's positives sit at column c * world_batch + offset + i, c < num_positives.
        rows = torch.arange(batch_size, device=scores.device)
        positive_index = (
            torch.arange(self.num_positives, device=scores.device)[None, :] * world_batch
            + (offset + rows)[:, None]
        )
        positive_scores = scores.gather(1, positive_index)  # (batch, num_positives)
        negative_scores = scores.scatter(1, positive_index, float("-inf"))
        negative_lse = torch.logsumexp(negative_scores, dim=1, keepdim=True)
        return (torch.logaddexp(positive_scores, negative_lse) - positive_scores).mean()

    def get_config_dict(self) -> dict[str, Any]:
        return {
            "num_positives": self.num_positives,
            "scale": self.scale,
            "similarity_fct": similarity_fct_name(self.similarity_fct),
            "gather_across_devices": self.gather_across_devices,
        }
