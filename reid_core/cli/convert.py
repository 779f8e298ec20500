"""Convert a dataset on disk into a validated Parquet manifest.

    reid convert {atrw,yakreid,elpephants,wildlife,folders} --root DIR --out m.parquet [...]
    (also: python -m reid_core convert ..., python -m reid_core.data.convert ...)

Prints images / individuals / entities per species and split, then writes the manifest. A source file
that does not match its format, or a manifest that breaks the contract, ends with exit status 1 and a
message naming the file, the line or row, and the fix (no traceback: these are user errors).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import polars as pl

from reid_core.cli.options import Parser
from reid_core.data import manifest
from reid_core.data.adapters import ADAPTERS, DatasetFormatError
from reid_core.data.adapters import yakreid as yak

COMMON = {"format", "root", "out"}  # everything else is passed to the adapter as a keyword


def build_parser() -> Parser:
    parser = Parser(prog="reid convert", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="format", required=True, metavar="FORMAT", parser_class=Parser)

    def command(name: str, help: str) -> Parser:
        p = sub.add_parser(name, help=help, description=help)
        p.add_argument("--root", required=True, help="the dataset folder; relative options are resolved against it")
        p.add_argument("--out", required=True, help="the Parquet manifest to write (local path or s3:// URI)")
        p.add_argument("--check-files", action="store_true", help="also verify that every image file exists")
        return p

    p = command("atrw", "ATRW re-ID: reid_list_train.csv + gt_test_plain.json (WildlifeDatasets or AER layout)")
    p.add_argument("--gt", help="gt_test_plain.json (default: annotations/ or atrw_anno_reid_test/ under the root)")
    p.add_argument("--sides", help="left/right list 'train/<eid>/<file> <label> <0 left|1 right>' (PGCFL/AER)")
    p.add_argument("--val-per-entity", type=int, default=0, metavar="K",
                   help="move K images per training entity to split val (AER holds out 1); default 0")
    p.add_argument("--train-images", help="training crops (default: atrw_reid_train/train)")
    p.add_argument("--test-images", help="test crops (default: atrw_reid_test/test, else AER's test/)")

    p = command("yakreid", "YakReID-103 from AER or PAW-ViT list files")
    p.add_argument("--level", choices=yak.LEVELS, default="hard", help="test level for the default probe/gallery lists")
    p.add_argument("--train-list", help=f"'path label direction' list (default: {yak.DEFAULT_TRAIN_LIST}; "
                                        "PAW-ViT: train.txt)")
    p.add_argument("--val-list", help=f"optional held-out list (default: {yak.DEFAULT_VAL_LIST} if present)")
    p.add_argument("--probe-list", help=f"'path label' probe list (default: {yak.DEFAULT_PROBE_LIST}; PAW: query.txt)")
    p.add_argument("--gallery-list", help=f"'path label' gallery list (default: {yak.DEFAULT_GALLERY_LIST})")
    p.add_argument("--train-images", help="folder the train/val paths are relative to (default: the root)")
    p.add_argument("--test-images", help="folder the probe/gallery paths are relative to (default: the root; "
                                         "AER: its data/val)")

    p = command("elpephants", "ELPephants from AER's re_mapped_filtered_anno_elephant.csv")
    p.add_argument("--csv", default="re_mapped_filtered_anno_elephant.csv", help="the annotation CSV")
    p.add_argument("--name-column", choices=("new_name", "old_name"), default="new_name",
                   help="file name column: AER's cropped new_name (default) or the original old_name")
    p.add_argument("--images", default="images", help="folder holding the files named by --name-column")

    p = command("wildlife", "WildlifeDatasets metadata.csv (AnimalCLEF2025, WildlifeReID-10k, ...)")
    p.add_argument("--metadata", default="metadata.csv", help="the metadata CSV (paths in it are relative to --root)")
    p.add_argument("--prefix", help="image_id prefix (default: the root folder's name)")
    p.add_argument("--species", help="species for rows with neither a species nor a dataset value")
    p.add_argument("--drop-unknown", action="store_true",
                   help="drop train/database rows of unknown identity instead of failing")

    p = command("folders", "one folder per individual: ROOT/<individual>/*.jpg|jpeg|png")
    p.add_argument("--species", required=True, help="species of every image, e.g. lynx")
    p.add_argument("--test-fraction", type=float, default=0.0, metavar="F",
                   help="fraction of individuals (not images) in split test; default 0 (all train)")
    p.add_argument("--seed", type=int, default=0, help="seed of the individual split and query choice")
    p.add_argument("--query-per-entity", type=int, default=0, metavar="K",
                   help="K query images per test individual, the rest gallery; default 0 (all 'both')")
    p.add_argument("--prefix", help="image_id prefix (default: the root folder's name)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    options = {k: v for k, v in vars(args).items() if k not in COMMON}
    try:
        df = ADAPTERS[args.format](args.root, **options)
    except (DatasetFormatError, manifest.ManifestError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"{df.height} images, {df['individual'].drop_nulls().n_unique()} individuals, "
          f"{df['entity'].drop_nulls().n_unique()} entities, {df['entity'].null_count()} queries of unknown identity")
    with pl.Config(tbl_rows=-1, tbl_formatting="ASCII_MARKDOWN", tbl_hide_dataframe_shape=True,
                   tbl_hide_column_data_types=True):
        print(manifest.summary(df))
    try:
        manifest.write(df, args.out)
    except OSError as error:
        print(f"error: cannot write {args.out}: {error}. Fix: choose a writable --out", file=sys.stderr)
        return 1
    print(f"wrote {len(df)} rows to {args.out}")
    return 0

