"""Contact sheets for a person to confirm identifications: the query beside its top-k known
individuals (one gallery image each, the best), with names and calibrated probabilities; with a local
matcher each candidate is shown beside the query with lines between the verified matches. A sheet per
proposed new individual (a grid of its photos), whole photos with each detected animal's box labelled,
and one HTML page linking every sheet.

Frames: the query's frame says the decision (known / new individual); a match's frame says whether it
is the query's individual where that is known (a labelled query), and is neutral otherwise.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFont

TILE = 160  # px, the longer side of every picture
CAPTION = 34  # px of text under each tile
BORDER = 5
COLOURS = {"known": (40, 120, 220), "new": (235, 140, 20), "correct": (30, 160, 60), "wrong": (210, 40, 40),
           "neutral": (150, 150, 150), "failed": (120, 120, 120)}


@dataclass(frozen=True)
class Tile:
    image: Image.Image | None  # None: could not be read (a grey tile)
    lines: tuple[str, ...]
    frame: str  # a COLOURS key


@dataclass(frozen=True)
class PairTile:
    """A candidate shown beside the query, lines joining their verified matches (keypoints in each image's pixels)."""

    query: Image.Image | None
    image: Image.Image | None
    keypoints_query: np.ndarray  # (M, 2)
    keypoints_image: np.ndarray  # (M, 2)
    lines: tuple[str, ...]
    frame: str


def _font() -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=12)
    except TypeError:  # Pillow without FreeType
        return ImageFont.load_default()


def _tile(tile: Tile, font: ImageFont.ImageFont) -> Image.Image:
    canvas = Image.new("RGB", (TILE + 2 * BORDER, TILE + 2 * BORDER + CAPTION), "white")
    draw = ImageDraw.Draw(canvas)
    draw.rectangle([0, 0, TILE + 2 * BORDER - 1, TILE + 2 * BORDER - 1], fill=COLOURS[tile.frame])
    if tile.image is not None:
        picture = tile.image.convert("RGB")
        picture.thumbnail((TILE, TILE))
        offset = (BORDER + (TILE - picture.width) // 2, BORDER + (TILE - picture.height) // 2)
        draw.rectangle([BORDER, BORDER, BORDER + TILE - 1, BORDER + TILE - 1], fill="white")
        canvas.paste(picture, offset)
    else:
        draw.rectangle([BORDER, BORDER, BORDER + TILE - 1, BORDER + TILE - 1], fill=(220, 220, 220))
    for i, line in enumerate(tile.lines[:2]):
        draw.text((BORDER, TILE + 2 * BORDER + 2 + 15 * i), line[:26], fill="black", font=font)
    return canvas


def _fit(picture: Image.Image | None) -> tuple[Image.Image | None, float, tuple[int, int]]:
    """The picture scaled (up or down) to fit a tile, its scale and its offset in the tile (centred)."""
    if picture is None:
        return None, 1.0, (0, 0)
    scale = TILE / max(picture.width, picture.height, 1)
    size = (max(1, round(picture.width * scale)), max(1, round(picture.height * scale)))
    return picture.convert("RGB").resize(size), scale, ((TILE - size[0]) // 2, (TILE - size[1]) // 2)


def _pair_tile(pair: PairTile, font: ImageFont.ImageFont) -> Image.Image:
    width = 2 * TILE + 3 * BORDER
    canvas = Image.new("RGB", (width, TILE + 2 * BORDER + CAPTION), "white")
    draw = ImageDraw.Draw(canvas)
    draw.rectangle([0, 0, width - 1, TILE + 2 * BORDER - 1], fill=COLOURS[pair.frame])
    placed = []  # (x0, y0, scale) of each picture
    for index, picture in enumerate((pair.query, pair.image)):
        x0 = BORDER + index * (TILE + BORDER)
        draw.rectangle([x0, BORDER, x0 + TILE - 1, BORDER + TILE - 1], fill="white" if picture else (220, 220, 220))
        fitted, scale, (dx, dy) = _fit(picture)
        if fitted is not None:
            canvas.paste(fitted, (x0 + dx, BORDER + dy))
        placed.append((x0 + dx, BORDER + dy, scale))
    (xq, yq, sq), (xi, yi, si) = placed
    for (xa, ya), (xb, yb) in zip(np.asarray(pair.keypoints_query).reshape(-1, 2),
                                  np.asarray(pair.keypoints_image).reshape(-1, 2), strict=True):
        draw.line([(xq + xa * sq, yq + ya * sq), (xi + xb * si, yi + yb * si)], fill=(0, 200, 255), width=1)
    for i, line in enumerate(pair.lines[:2]):
        draw.text((BORDER, TILE + 2 * BORDER + 2 + 15 * i), line[:52], fill="black", font=font)
    return canvas


def render_sheet(query: Tile, matches: Sequence[Tile | PairTile], gap: int = 12) -> Image.Image:
    """One row: the query, a gap, then the matches in rank order (a ``PairTile`` draws the match lines)."""
    font = _font()
    tiles = [_tile(query, font)] + [_pair_tile(m, font) if isinstance(m, PairTile) else _tile(m, font)
                                    for m in matches]
    width = sum(t.width for t in tiles) + gap * len(matches) + gap
    sheet = Image.new("RGB", (width, tiles[0].height), "white")
    x = 0
    for index, tile in enumerate(tiles):
        sheet.paste(tile, (x, 0))
        x += tile.width + (2 * gap if index == 0 else gap)
    return sheet


def render_group(tiles: Sequence[Tile], columns: int = 6, gap: int = 8) -> Image.Image:
    """A grid of a proposed new individual's photos."""
    font = _font()
    drawn = [_tile(t, font) for t in tiles]
    cell_w, cell_h = drawn[0].width + gap, drawn[0].height + gap
    rows = (len(drawn) + columns - 1) // columns
    sheet = Image.new("RGB", (cell_w * min(columns, len(drawn)), cell_h * rows), "white")
    for index, tile in enumerate(drawn):
        sheet.paste(tile, ((index % columns) * cell_w, (index // columns) * cell_h))
    return sheet


def render_photo(photo: Image.Image, boxes: Sequence[tuple[Sequence[float], str, str]],
                 longest: int = 960) -> Image.Image:
    """A whole photo with each animal's box (x0, y0, x1, y1 in the photo's pixels) drawn in its frame's
    colour (a COLOURS key) and labelled (its individual, or new-N), scaled to at most ``longest`` px."""
    picture = photo.convert("RGB")
    scale = min(1.0, longest / max(picture.width, picture.height, 1))
    if scale < 1:
        picture = picture.resize((max(1, round(picture.width * scale)), max(1, round(picture.height * scale))))
    draw, font = ImageDraw.Draw(picture), _font()
    width = max(2, round(max(picture.width, picture.height) / 200))
    for box, label, frame in boxes:
        x0, y0, x1, y1 = (v * scale for v in box)
        colour = COLOURS[frame]
        draw.rectangle([x0, y0, x1, y1], outline=colour, width=width)
        left, top, right, bottom = draw.textbbox((0, 0), label, font=font)
        y = y0 - (bottom - top) - 4 if y0 >= (bottom - top) + 4 else y1 + 1
        draw.rectangle([x0, y, x0 + right - left + 4, y + bottom - top + 4], fill=colour)
        draw.text((x0 + 2 - left, y + 2 - top), label, fill="white", font=font)
    return picture


def write_index(path: str, title: str, entries: Sequence[dict], summary: Sequence[str] = (),
                groups: Sequence[dict] = (), photos: Sequence[dict] = ()) -> str:
    """An HTML page with one row per entry (``sheet`` relative link, ``image_id``, ``decision``,
    ``top1``, ``score``, ``error``), one per proposed new individual (``name``, ``photos``, ``sheet``) and
    one per whole photo (``name``, ``animals``, ``status``, ``sheet``: the photo with its boxes labelled);
    returns its text after writing it to ``path``."""
    rows = []
    for entry in entries:
        decision = entry.get("decision") or "failed"
        sheet = (f'<a href="{html.escape(entry["sheet"])}"><img src="{html.escape(entry["sheet"])}" height="120"></a>'
                 if entry.get("sheet") else html.escape(entry.get("error") or ""))
        rows.append(f'<tr class="{decision}"><td>{html.escape(str(entry["image_id"]))}</td>'
                    f'<td>{decision}</td><td>{html.escape(str(entry.get("top1") or ""))}</td>'
                    f'<td>{entry.get("score") if entry.get("score") is not None else ""}</td><td>{sheet}</td></tr>')
    style = ("body{font-family:sans-serif}td{padding:4px 8px;vertical-align:middle}"
             "tr.new td:nth-child(2){color:#eb8c14;font-weight:bold}tr.known td:nth-child(2){color:#2878dc}"
             "tr.failed td:nth-child(2){color:#787878}")
    text = (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{style}</style></head><body><h1>{html.escape(title)}</h1>"
            + "".join(f"<p>{html.escape(line)}</p>" for line in summary)
            + "<table><tr><th>image</th><th>decision</th><th>top-1</th><th>probability</th><th>contact sheet</th></tr>"
            + "".join(rows) + "</table>"
            + ("<h2>Proposed new individuals</h2><table><tr><th>group</th><th>photos</th><th>sheet</th></tr>"
               + "".join(f'<tr><td>{html.escape(g["name"])}</td><td>{g["photos"]}</td><td><a href="'
                         f'{html.escape(g["sheet"])}"><img src="{html.escape(g["sheet"])}" height="120"></a></td></tr>'
                         for g in groups) + "</table>" if groups else "")
            + ("<h2>Whole photos</h2><table><tr><th>photo</th><th>animals</th><th>detection</th><th>boxes</th></tr>"
               + "".join(f'<tr><td>{html.escape(str(p["name"]))}</td><td>{p["animals"]}</td>'
                         f'<td>{html.escape(str(p.get("status") or ""))}</td><td>'
                         + (f'<a href="{html.escape(p["sheet"])}"><img src="{html.escape(p["sheet"])}" height="160">'
                            f'</a>' if p.get("sheet") else "") + "</td></tr>" for p in photos) + "</table>"
               if photos else "")
            + "</body></html>")
    from reid_core.data import files as rio

    rio.write_bytes(path, text.encode())
    return text
