"""What the triplet loss sees, epoch by epoch: one in-process training of a method (the engine's loop, no
Ray, no MLflow) that measures after every epoch, on a fixed P x K batch of training images (8 entities
x 3, the eval transform), the feature the triplet receives (``features``) and the BN's output:

- ``norm``: mean L2 norm; ``cos_mean`` / ``cos_min``: pairwise cosines (off the diagonal);
- ``common``: the share of the energy in the batch's mean vector, ||mean f||^2 / mean ||f||^2 (1: every
  feature is the same vector; 0: centred);
- ``top_pc``: the share of the centred energy in the first principal component;
- ``d_ap`` / ``d_an``: mean hardest-positive / hardest-negative cosine distance (1 - cos) / 2, and
  ``triplet``: the batch-hard cosine triplet at margin 0.4 on that batch;
- PAW-ViT also ``part_tokens``: the same for each centred part token the aggregation block receives.

With the training's own per-epoch losses (``train.loss_triplet``, ...), its ``val.*`` scores (``val.mAP``,
PAW-ViT's ``val.part_mIoU``) and, at the end, the last epoch's ``test.*`` scores. Prints one JSON
object per epoch, then one with ``test``.

    python benchmarks/triplet_features.py --method vit --species tiger --seed 0 [--epochs 30] \\
        [--manifest M] [--set losses.triplet_feature=pre_bn] [--save-backbone vit_tiger.pth]

``--save-backbone`` writes the trained backbone's state_dict, which ``--set backbone.pretrained=PATH``
loads into another training (a ViT-family start from weights trained on another species).
"""

from __future__ import annotations

import argparse
import json
import time

import polars as pl
import torch
import torch.nn.functional as F

from reid_core.data.dataset import ManifestDataset, select_images
from reid_core.engine import loop
from reid_core.engine.evaluate import evaluate_split
from reid_core.engine.session import default_device
from reid_core.losses.triplet import batch_hard_triplet_loss, pairwise_distance
from reid_core.settings import get_settings

MARGIN = 0.4


def feature_stats(features: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    f = features.float()
    norms = f.norm(dim=1)
    unit = F.normalize(f, dim=1)
    off = ~torch.eye(len(f), dtype=torch.bool)
    cos = (unit @ unit.t())[off]
    centred = f - f.mean(0)
    singular = torch.linalg.svdvals(centred)
    distance = pairwise_distance(f, "cosine")
    same = labels[:, None] == labels[None, :]
    hardest_positive = distance.masked_fill(~(same & off), -1.0).amax(1)
    hardest_negative = distance.masked_fill(same, 9.0).amin(1)
    return {"norm": float(norms.mean()), "cos_mean": float(cos.mean()), "cos_min": float(cos.min()),
            "common": float(f.mean(0).norm() ** 2 / (norms ** 2).mean()),
            "top_pc": float(singular[0] ** 2 / (singular ** 2).sum().clamp_min(1e-30)),
            "d_ap": float(hardest_positive.mean()), "d_an": float(hardest_negative.mean()),
            "triplet": float(batch_hard_triplet_loss(f, labels, MARGIN, "cosine"))}


def fixed_batch(job: loop.TrainJob, ids: int = 8, per_id: int = 3) -> dict[str, torch.Tensor]:
    """The first ``per_id`` images (by image_id) of the first ``ids`` training entities, eval-transformed."""
    method, config = job.method_and_config()
    rows = loop.load_species_rows(job.manifest, job.species)
    images = select_images(rows.filter(pl.col("split") == "train"), job.use_masked)
    entities = images.rows["entity"].unique().sort().to_list()[:ids]
    chosen = pl.concat([images.rows.filter(pl.col("entity") == e).sort("image_id").head(per_id) for e in entities])
    dataset = ManifestDataset(chosen, method.eval_transform(config), column=images.column)
    items = [dataset[i] for i in range(len(dataset))]
    return {"image": torch.stack([x["image"] for x in items]), "label": torch.stack([x["label"] for x in items])}


class MeasuringSession:
    """An in-process session (no checkpoints) that measures the network at every epoch's report."""

    rank, world_size = 0, 1

    def __init__(self, batch: dict[str, torch.Tensor]) -> None:
        self.device = default_device(False)
        self.batch, self.network = batch, None

    def to_device(self, network):
        self.network = network
        return network

    def wrap(self, network):
        return network

    def prepare_loader(self, loader):
        return loader

    def restore(self, map_location):
        return None

    def report(self, metrics: dict, state, progress) -> None:
        net, bn = self.network, self.network.neck.bn
        was_training, momentum = net.training, bn.momentum
        net.train()  # the triplet's view: batch statistics (no dropout or drop-path in the cpu presets)
        bn.momentum = 0.0  # measure without moving the running statistics
        try:
            with torch.no_grad():
                out = net(self.batch["image"])
        finally:
            bn.momentum = momentum
            net.train(was_training)
        labels = self.batch["label"]
        stages = part_token_stats(net, self.batch["image"], labels) if hasattr(net, "aggregation") else {}
        print(json.dumps({**{k: v for k, v in metrics.items() if k.startswith(("train.loss", "val.", "epoch"))},
                          "features": feature_stats(out["features"], labels),
                          "bn": feature_stats(out["normed"], labels), **stages}), flush=True)


def part_token_stats(net, images: torch.Tensor, labels: torch.Tensor) -> dict[str, list[dict[str, float]]]:
    """PAW-ViT: the same measures on each part token the aggregation block receives (centred: where
    the descriptor's spread comes from), in the network's current mode."""
    with torch.no_grad():
        tokens, _ = net.tokens(images)
    parts = tokens[:, :net.num_parts]
    return {"part_tokens": [feature_stats(parts[:, k] - parts[:, k].mean(0), labels) for k in range(net.num_parts)]}


def parse_value(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", default="vit")
    parser.add_argument("--species", default="tiger")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=None, help="default: the preset's")
    parser.add_argument("--preset", default="cpu")
    parser.add_argument("--manifest", default=None,
                        help="default: $REID_HOME/data/synthetic/segmented-nocrop/manifest.parquet (segmented "
                             "with --no-crop: PAW-ViT's part maps are on the photo's frame)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--save-backbone", default=None, metavar="PATH",
                        help="write the trained backbone's state_dict here (loadable as backbone.pretrained)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    overrides = {key: parse_value(value) for key, value in (item.split("=", 1) for item in args.set)}
    if args.epochs is not None:
        overrides["schedule.epochs"] = args.epochs
    manifest = args.manifest or str(get_settings().synthetic_dir / "segmented-nocrop" / "manifest.parquet")
    job = loop.TrainJob(manifest=manifest, species=args.species, method=args.method, preset=args.preset,
                        overrides=overrides, seed=args.seed, cache_images=True)
    session = MeasuringSession(fixed_batch(job))
    started = time.perf_counter()
    loop.train(job, session)
    method, config = job.method_and_config()
    rows = loop.load_species_rows(job.manifest, job.species)
    test = evaluate_split(method, session.network, rows, method.eval_transform(config), "test", config=config)
    if args.save_backbone:
        torch.save(session.network.backbone.state_dict(), args.save_backbone)
    print(json.dumps({"test": test, "seconds": round(time.perf_counter() - started, 1),
                      "method": args.method, "seed": args.seed, "overrides": overrides}), flush=True)


if __name__ == "__main__":
    main()
