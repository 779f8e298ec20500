"""Pictures a registered model carries, for a person to judge it before promoting it:

- rank lists: a few test queries, each beside its top-k gallery matches with their similarities,
  every match framed green when it shows the query's entity and red when not (the contact sheets'
  tiles and colours, ``contact_sheet``);
- an embedding plot: the test images' embeddings in 2-D (t-SNE, PCA below 5 images), one colour per
  individual.

Pure functions from images, embeddings and rows to PIL images; choosing what to show is here too,
so the publish step only embeds and logs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl
from PIL import Image

from reid_core.reports.contact_sheet import TILE, Tile, render_sheet

ROW_GAP = 10  # px between the rank lists' rows
PLOT_SIZE = (7.0, 6.0)  # inches at PLOT_DPI: a 700 x 600 px embedding plot
PLOT_DPI = 100
# Exact t-SNE (O(n^2) memory and time; ~seconds at 1000 points): scikit-learn's Barnes-Hut variant runs an
# OpenMP loop that crashed (SIGSEGV) in a process that had torch, Ray and moto threads running. Beyond
# this many test images a seeded subsample is plotted.
MAX_PLOT_POINTS = 1000
LEGEND_MAX = 20  # individuals named in the legend (more: colours only)


@dataclass(frozen=True)
class Match:
    image: Image.Image | None
    label: str  # the gallery image's entity
    score: float  # cosine similarity to the query
    correct: bool  # the same entity as the query


@dataclass(frozen=True)
class RankedQuery:
    image: Image.Image | None
    label: str
    matches: Sequence[Match]


def _fit(image: Image.Image | None) -> Image.Image | None:
    """Small images (e.g. 48 px test sets) enlarged to the tile size, so a person can see them."""
    if image is None or max(image.size) >= TILE:
        return image
    scale = TILE / max(image.size)
    return image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                        Image.Resampling.BICUBIC)


def rank_lists(queries: Sequence[RankedQuery]) -> Image.Image:
    """One row per query: the query (grey frame), then its matches in rank order, green = correct,
    red = wrong, captioned with rank, entity and similarity."""
    if not queries:
        raise ValueError("rank_lists needs at least one query")
    rows = [render_sheet(Tile(_fit(q.image), ("query", q.label), "neutral"),
                         [Tile(_fit(m.image), (f"{rank}. {m.label}", f"similarity {m.score:.3f}"),
                               "correct" if m.correct else "wrong")
                          for rank, m in enumerate(q.matches, start=1)])
            for q in queries]
    sheet = Image.new("RGB", (max(r.width for r in rows), sum(r.height for r in rows) + ROW_GAP * (len(rows) - 1)),
                      "white")
    y = 0
    for row in rows:
        sheet.paste(row, (0, y))
        y += row.height + ROW_GAP
    return sheet


def _roles(rows: pl.DataFrame, wanted: str) -> np.ndarray:
    """Which rows can be a query (``wanted="query"``) or a gallery image: by ``role`` where the manifest
    has roles, else every row (probe = gallery, the query itself left out)."""
    if "role" not in rows.columns or rows["role"].is_null().all():
        return np.ones(rows.height, dtype=bool)
    return rows["role"].is_in([wanted, "both"]).fill_null(False).to_numpy()


def choose_rankings(features: np.ndarray, rows: pl.DataFrame, *, queries: int = 4, top_k: int = 5,
                    seed: int = 0) -> list[tuple[int, list[tuple[int, float]]]]:
    """Up to ``queries`` query rows of different entities (seeded), each with its ``top_k`` gallery rows
    by cosine similarity (the embeddings are L2-normalised), the query's own image left out.

    Prefers queries whose entity is in the gallery, so a correct match is possible. Returns
    ``[(query_row, [(gallery_row, similarity), ...]), ...]``; the protocol's junk rules (same camera,
    near frames) are not applied: this is the ranking as the model sees it.
    """
    entities = rows["entity"].to_list()
    ids = rows["image_id"].to_list()
    is_query, is_gallery = _roles(rows, "query"), _roles(rows, "gallery")
    gallery = np.flatnonzero(is_gallery)
    in_gallery = {entities[g] for g in gallery}
    candidates = [i for i in np.flatnonzero(is_query)]
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(candidates))
    ranked = sorted((candidates[i] for i in order), key=lambda i: entities[i] not in in_gallery)  # stable
    chosen, seen = [], set()
    for index in ranked:
        if entities[index] not in seen:
            chosen.append(int(index))
            seen.add(entities[index])
        if len(chosen) == queries:
            break
    out = []
    for q in chosen:
        others = gallery[[ids[g] != ids[q] for g in gallery]]
        if not len(others):
            continue
        scores = features[others] @ features[q]
        best = np.argsort(-scores, kind="stable")[:top_k]
        out.append((q, [(int(others[b]), float(scores[b])) for b in best]))
    return out


def project_2d(features: np.ndarray, seed: int) -> tuple[np.ndarray, str]:
    """Points (n, 2) and how they were made: t-SNE from 5 points, PCA below, zeros for identical features."""
    n = len(features)
    if n == 0 or np.abs(features - features.mean(axis=0)).max() < 1e-6:  # a collapsed model
        return np.zeros((n, 2)), "all embeddings identical"
    if n >= 5:
        from sklearn.manifold import TSNE

        perplexity = float(min(30.0, (n - 1) / 3))
        return TSNE(n_components=2, perplexity=perplexity, init="pca", method="exact",
                    random_state=seed).fit_transform(features.astype(np.float64)), "t-SNE"
    from sklearn.decomposition import PCA

    components = min(2, n, features.shape[1])
    points = PCA(n_components=components).fit_transform(features) if n > 1 else np.zeros((n, 1))
    return np.pad(points, ((0, 0), (0, 2 - points.shape[1]))), "PCA"


def plot_sample(features: np.ndarray, individuals: Sequence[str], seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """At most ``MAX_PLOT_POINTS`` embeddings (a seeded random subset) and their individuals as strings."""
    individuals = np.asarray([str(i) for i in individuals])
    if len(features) > MAX_PLOT_POINTS:
        keep = np.sort(np.random.default_rng(seed).choice(len(features), MAX_PLOT_POINTS, replace=False))
        features, individuals = features[keep], individuals[keep]
    return features, individuals


def individual_scatter(points: np.ndarray, individuals: np.ndarray, title: str,
                       draw_more: Callable | None = None) -> Image.Image:
    """2-D points, one colour per individual (a legend up to ``LEGEND_MAX``); ``draw_more(ax)`` adds to
    the axes before the legend. 700 x 600 px."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = sorted(set(individuals.tolist()))
    colours = matplotlib.colormaps["tab10" if len(names) <= 10 else "tab20"]
    fig, ax = plt.subplots(figsize=PLOT_SIZE, dpi=PLOT_DPI)
    for index, name in enumerate(names):
        mine = individuals == name
        ax.scatter(points[mine, 0], points[mine, 1], s=28, color=colours(index % colours.N), edgecolors="black",
                   linewidths=0.3, label=name)
    if draw_more is not None:
        draw_more(ax)
    ax.set_title(title, fontsize=10)
    ax.set_xticks([])
    ax.set_yticks([])
    if len(names) <= LEGEND_MAX:
        ax.legend(fontsize=7, loc="best", framealpha=0.8, ncol=2 if len(names) > 10 else 1)
    fig.subplots_adjust(left=0.03, right=0.97, bottom=0.03, top=0.9)
    fig.canvas.draw()
    image = Image.fromarray(np.asarray(fig.canvas.buffer_rgba())[..., :3].copy())
    plt.close(fig)
    return image


def embedding_plot(features: np.ndarray, individuals: Sequence[str], title: str, seed: int = 0) -> Image.Image:
    """The embeddings in 2-D (t-SNE; PCA below 5 points), one colour per individual; 700 x 600 px."""
    features, individuals = plot_sample(features, individuals, seed)
    points, how = project_2d(features, seed)
    count = len(set(individuals.tolist()))
    return individual_scatter(points, individuals,
                              f"{title}\n{how}: {len(points)} test embeddings, {count} individuals")
