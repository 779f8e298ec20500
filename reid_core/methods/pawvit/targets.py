"""The distillation targets: the on-disk part label maps merged to K parts and one-hot encoded.

Label maps on disk use the quadruped vocabulary of ``reid_core.parts.schemes`` (0 background, 1..5).
The species' scheme merges them to the configured K when a batch arrives (the train transform does not
know the species; the stage reads it from the training rows when it starts). The targets have K+1
channels with the background last, the order of the network's tokens (the authors' masks: the parts,
then the background channel).
"""

from __future__ import annotations

import polars as pl
import torch
import torch.nn.functional as F

from reid_core.parts.schemes import PartScheme, scheme_for


def species_scheme(rows: pl.DataFrame, num_parts: int) -> PartScheme:
    """The part scheme of the rows' one species, checked to have a grouping of ``num_parts`` parts."""
    species = rows["species"].unique().to_list()
    if len(species) != 1:
        raise ValueError(f"pawvit trains on one species at a time (its part scheme), the rows hold {sorted(species)}")
    try:
        scheme = scheme_for(species[0])
    except ValueError as err:
        raise ValueError(f"pawvit needs a part scheme for its part tokens: {err}") from None
    if num_parts not in scheme.groupings:
        choices = ",".join(map(str, scheme.choices))
        raise ValueError(
            f"parts.num_parts={num_parts} is not a part grouping of the {scheme.species} scheme "
            f"(reid_core/parts/schemes.py): use one of {choices}, e.g. --set parts.num_parts={scheme.default_k}")
    return scheme


def merge_table(scheme: PartScheme, num_parts: int) -> torch.Tensor:
    """Vocabulary label -> token channel (parts 0..K-1, background K), a 256-entry lookup."""
    merged = torch.from_numpy(scheme.lookup(num_parts)).long()  # 0 background, 1..K
    return (merged - 1) % (num_parts + 1)


def part_targets(labels: torch.Tensor, table: torch.Tensor, num_parts: int) -> torch.Tensor:
    """(B, H, W) vocabulary labels -> (B, K+1, H, W) one-hot float targets, background last."""
    channels = table.to(labels.device)[labels.long().clamp(0, 255)]
    return F.one_hot(channels, num_parts + 1).permute(0, 3, 1, 2).float()


def part_visibility(targets: torch.Tensor) -> torch.Tensor:
    """(B, K) bool: part k is visible in image b when its target mask has a pixel (the paper's set V;
    the code's ``any(mask >= 0.4)`` is the same on one-hot targets). The background is not a part."""
    return targets[:, :-1].flatten(2).amax(2) > 0.5
