"""``synthetic``: write a procedural re-ID dataset (images, masks, part maps, ATRW-format keypoints,
manifest.parquet).

    python -m reid_core synthetic --out DIR --species tiger,yak,elephant --individuals 40 \
        --images-per-individual 12 --size 128 --seed 0
"""

from __future__ import annotations

import sys
import time

import polars as pl

from reid_core.cli.options import Parser
from reid_core.data import files as rio
from reid_core.data import manifest, synthetic
from reid_core.settings import get_settings


def build_parser() -> Parser:
    parser = Parser(prog="synthetic", description=synthetic.__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=None, help="output folder or s3:// URI (default: $REID_HOME/data/synthetic)")
    parser.add_argument("--species", default=",".join(synthetic.DEFAULT_SPECIES),
                        help=f"comma-separated, of {', '.join(synthetic.SPECIES)}")
    parser.add_argument("--individuals", type=int, default=40, help="individuals per species")
    parser.add_argument("--images-per-individual", type=int, default=12)
    parser.add_argument("--size", type=int, default=128, help="image side in pixels")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--val-fraction", type=float, default=0.1)
    parser.add_argument("--test-fraction", type=float, default=0.3)
    parser.add_argument("--scenes", type=int, default=synthetic.DEFAULT_SCENES, help="number of background scenes")
    parser.add_argument("--cameras", type=int, default=synthetic.DEFAULT_CAMERAS)
    parser.add_argument("--occlusion", type=float, default=synthetic.DEFAULT_OCCLUSION,
                        help="probability of an occluder")
    parser.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    parser.add_argument("--whole-photos", type=int, default=0,
                        help="also write N whole camera-trap photos per species (0-3 animals each, exact boxes and "
                             "masks) under OUT/whole/, for `reid detect`")
    parser.add_argument("--photo-size", type=int, default=384, help="side of the whole photos in pixels")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    out = args.out or str(get_settings().synthetic_dir)
    start = time.perf_counter()
    try:
        df = synthetic.generate(out, args.species, args.individuals, args.images_per_individual, args.size,
                                args.seed, val_fraction=args.val_fraction, test_fraction=args.test_fraction,
                                scenes=args.scenes, cameras=args.cameras, occlusion=args.occlusion,
                                workers=args.workers)
        whole = None
        if args.whole_photos:
            whole = synthetic.generate_whole_photos(
                rio.join(out, "whole"), df["species"].unique(maintain_order=True).to_list(), args.whole_photos,
                individuals=args.individuals, seed=args.seed, size=args.photo_size, val_fraction=args.val_fraction,
                test_fraction=args.test_fraction, scenes=args.scenes, occlusion=args.occlusion)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    elapsed = time.perf_counter() - start
    with pl.Config(tbl_rows=-1):
        print(manifest.summary(df))
    print(f"wrote {len(df)} images to {out} in {elapsed:.1f} s; manifest: {rio.join(out, 'manifest.parquet')}")
    if whole is not None:
        print(f"wrote {len(whole)} whole photos with {int(whole['animals'].sum())} animals; manifest: "
              f"{rio.join(out, 'whole', 'manifest.parquet')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
