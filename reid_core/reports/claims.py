"""The papers' claims that ``reid reproduce CLAIM`` measures, as data: the compared arms, the test sets, and
the numbers the papers report (theirs, on their data), each with its table and row.

A claim is a comparison of arms (a method with overrides, or original vs background-removed images) over
seeds; ``reference`` is the arm the others are measured against (the baseline, or the paper's chosen value).
``Reported`` numbers are copied from the papers in /work/shared/papers (the tables named); they are the
authors' models on the authors' datasets at full scale, never ours. Synthetic species stand for the
datasets: tiger for ATRW, yak for YakReID-103, elephant for ELPephants.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# The synthetic species and the real dataset each stands for, in the papers' tables.
DATASET_OF = {"tiger": "ATRW", "yak": "YakReID-103", "elephant": "ELPephants"}


@dataclass(frozen=True)
class ClaimArm:
    name: str  # row label and metric-key part (letters, digits, _ . -)
    method: str
    overrides: dict = field(default_factory=dict)  # dotted config keys on top of the preset
    use_masked: bool | None = None  # None: masked images where the manifest has them
    label: str = ""  # what the arm is, in words


@dataclass(frozen=True)
class Reported:
    """One number of a paper's table: ``arm`` (ours that corresponds), ``view`` (our test set: "" for the
    training's own test split, else an extra test set's name), their dataset, metric, value and CI."""

    arm: str
    dataset: str
    metric: str
    value: float  # in %
    where: str  # "AER Table 1, row 2 (train original, test masked)"
    view: str = ""
    ci95: float | None = None  # their 95% CI half-width where they report one


@dataclass(frozen=True)
class Claim:
    name: str
    paper: str
    table: str
    statement: str  # what the paper claims, in a sentence
    arms: tuple[ClaimArm, ...]
    reference: str  # the arm the others are compared with
    data: str  # what the synthetic data must be: "masked-crop" (the demo's) or "masked-nocrop" (part maps line up)
    species: tuple[str, ...] = ("tiger",)  # default species on the synthetic data
    views: tuple[str, ...] = ("",)  # test sets compared: "" the own test split; else ``image_views`` names
    image_views: bool = False  # also test every training on original and on masked images
    transfer: bool = False  # also test every training on every other species (a transfer matrix)
    reported: tuple[Reported, ...] = ()
    their_model: str = ""  # whose model the reported numbers are (PGCFL in AER Table 1)
    caveat: str = ""  # printed when ``caveat_key`` of the config is None (random weights)
    caveat_key: str = ""
    needs_parts: bool = False  # the manifest must have part maps (parts_uri)
    swept_key: str = ""  # the config key the arms vary, shown with each arm's value


IMAGE_VIEWS = ("original_images", "masked_images")

_AER_T1 = "AER Table 1"
_AER_A3 = "AER Table A.3"
_CARE_T1 = "CARE supplementary Table 1"
_CARE_T2 = "CARE supplementary Table 2"

# CARE supplementary Tables 1-2, the ATRW (Tiger) row: (value, CI) per column; mAP then Rank-1.
_CARE_TOKENS = {2: ((54.3, 0.4), (93.8, 0.3)), 4: ((56.8, 0.2), (95.3, 0.1)), 8: ((53.8, 0.4), (93.9, 0.1)),
                16: ((53.5, 0.9), (94.5, 0.6))}
_CARE_MARGINS = {0.1: ((55.4, 0.1), (95.1, 0.1)), 0.3: ((53.8, 0.2), (94.5, 0.4)), 0.5: ((53.0, 0.2), (93.5, 0.2)),
                 0.7: ((56.8, 0.2), (95.3, 0.1)), 0.9: ((53.1, 0.2), (94.1, 0.3))}
_CARE_CAVEAT = ("CARE's prompts are words for a text tower that knows words: with random weights (the cpu "
                "preset's tiny CLIP) the text tower knows none, so these prompt-token and margin numbers "
                "cannot show the paper's claim; they only measure the recipe on the synthetic data. Use "
                "--preset paper (pretrained CLIP) for the claim itself.")


def _care_reported(table: str, values: dict, arm_name) -> tuple[Reported, ...]:
    out = []
    for key, ((map_, map_ci), (r1, r1_ci)) in values.items():
        arm = arm_name(key)
        out.append(Reported(arm, "ATRW", "mAP", map_, f"{table}, row Tiger, column {key}", ci95=map_ci))
        out.append(Reported(arm, "ATRW", "R@1", r1, f"{table}, row Tiger, column {key}", ci95=r1_ci))
    return tuple(out)


def _token_arm(w: int) -> str:
    return f"w{w}"


def _margin_arm(m: float) -> str:
    return f"margin_{m}"


CLAIMS: dict[str, Claim] = {c.name: c for c in (
    Claim(
        name="aer-background", paper="AER (Yu et al.)", table=_AER_T1,
        statement="Training on the original images lets a model lean on backgrounds: tested on background-"
                  "removed images it collapses, while training on background-removed images does not.",
        arms=(ClaimArm("original", "dve", use_masked=False, label="trained on the original images"),
              ClaimArm("masked", "dve", use_masked=True, label="trained on background-removed images")),
        reference="original", data="masked-nocrop", views=IMAGE_VIEWS, image_views=True,
        their_model="PGCFL on ATRW (AER's Table 1 measures PGCFL, not AER's model)",
        reported=(
            Reported("original", "ATRW", "mmAP", 74.5, f"{_AER_T1}, row 1 (train original, test original)",
                     view="original_images"),
            Reported("original", "ATRW", "mmAP", 60.2, f"{_AER_T1}, row 2 (train original, test masked)",
                     view="masked_images"),
            Reported("masked", "ATRW", "mmAP", 66.9, f"{_AER_T1}, row 3 (train masked, test masked)",
                     view="masked_images"),
            Reported("masked", "ATRW", "mmAP", 73.4, f"{_AER_T1}, row 4 (train masked, test original)",
                     view="original_images"),
            Reported("original", "ATRW", "R@1(c)", 90.3, f"{_AER_T1}, row 1", view="original_images"),
            Reported("original", "ATRW", "R@1(c)", 83.4, f"{_AER_T1}, row 2", view="masked_images"),
            Reported("masked", "ATRW", "R@1(c)", 86.3, f"{_AER_T1}, row 3", view="masked_images"),
            Reported("masked", "ATRW", "R@1(c)", 89.7, f"{_AER_T1}, row 4", view="original_images"),
        )),
    Claim(
        name="aer-lambda-dve", paper="AER (Yu et al.)", table=_AER_A3,
        statement="The DVE loss (lambda_DVE > 0) adds to the identity, circle and orientation losses with "
                  "P x K batch sampling (+1.7 mAP on ATRW).",
        arms=(ClaimArm("lambda_dve_0", "dve", {"losses.lambda_dve": 0.0}, label="lambda_DVE = 0"),
              ClaimArm("lambda_dve_preset", "dve", label="lambda_DVE of the preset")),
        reference="lambda_dve_0", data="masked-crop", swept_key="losses.lambda_dve", their_model="AER on ATRW (masked backgrounds, no re-ranking)",
        reported=(
            Reported("lambda_dve_0", "ATRW", "mAP", 63.2, f"{_AER_A3}, row 8 (L_ID, L_reID, L_LR, B.S.)"),
            Reported("lambda_dve_preset", "ATRW", "mAP", 64.9, f"{_AER_A3}, row 9 (all, lambda_DVE 0.2)"),
            Reported("lambda_dve_0", "ATRW", "R@1(c)", 80.6, f"{_AER_A3}, row 8"),
            Reported("lambda_dve_preset", "ATRW", "R@1(c)", 82.9, f"{_AER_A3}, row 9"),
            Reported("lambda_dve_0", "ATRW (no B.S.)", "mAP", 63.4, f"{_AER_A3}, row 6 (L_ID, L_reID, L_LR)"),
            Reported("lambda_dve_preset", "ATRW (no B.S.)", "mAP", 63.4, f"{_AER_A3}, row 7 (+ L_DVE)"),
        )),
    Claim(
        name="aer-transfer", paper="AER (Yu et al.)", table="AER Table A.5",
        statement="A model trained on one species transfers to the others, below the model trained on the "
                  "test species itself (the diagonal beats its column).",
        arms=(ClaimArm("dve", "dve", label="DVE trained on the row's species"),),
        reference="dve", data="masked-crop", species=("tiger", "yak", "elephant"), transfer=True,
        their_model="AER on masked backgrounds",
        # (train species, test species) -> their headline metric: ATRW mmAP, the others mAP
        reported=tuple(
            Reported(f"{train}>{test}", DATASET_OF[test], "mmAP" if test == "tiger" else "mAP", value,
                     f"AER Table A.5, row {DATASET_OF[train]}, column {DATASET_OF[test]}")
            for (train, test), value in {
                ("tiger", "tiger"): 68.6, ("tiger", "yak"): 35.9, ("tiger", "elephant"): 6.7,
                ("yak", "tiger"): 49.5, ("yak", "yak"): 61.0, ("yak", "elephant"): 6.5,
                ("elephant", "tiger"): 47.2, ("elephant", "yak"): 34.5, ("elephant", "elephant"): 24.3,
            }.items())),
    Claim(
        name="pawvit-vs-vit", paper="PAW-ViT", table="PAW-ViT Tables 1-3",
        statement="Part tokens distilled from part masks beat the plain ViT baseline trained the same way.",
        arms=(ClaimArm("vit", "vit", label="the ViT baseline"),
              ClaimArm("pawvit", "pawvit", label="PAW-ViT with the preset's losses")),
        reference="vit", data="masked-nocrop", species=("tiger", "yak"), needs_parts=True,
        their_model="ViT-Base from ImageNet at 256 px",
        reported=(
            Reported("vit", "ATRW", "mmAP", 73.5, "PAW-ViT Table 1, row Baseline ViT-Base"),
            Reported("pawvit", "ATRW", "mmAP", 77.1, "PAW-ViT Table 1, row PAW-ViT"),
            Reported("vit", "ATRW", "single mAP", 84.0, "PAW-ViT Table 3, row 1 (L_CE only: ~ the baseline)"),
            Reported("pawvit", "ATRW", "single mAP", 89.0, "PAW-ViT Table 3, row 4 (all losses)"),
            Reported("vit", "YakReID-103", "mAP", 71.7, "PAW-ViT Table 2, row Baseline ViT-Base (hard)"),
            Reported("pawvit", "YakReID-103", "mAP", 73.2, "PAW-ViT Table 2, row PAW-ViT (hard)"),
        )),
    Claim(
        name="pawvit-distillation", paper="PAW-ViT", table="PAW-ViT Table 3",
        statement="The part-mask distillation loss (lambda_seg > 0) adds cross-camera mAP (+0.9) and rank-1.",
        arms=(ClaimArm("lambda_seg_0", "pawvit", {"losses.lambda_seg": 0.0}, label="lambda_seg = 0"),
              ClaimArm("lambda_seg_preset", "pawvit", label="lambda_seg of the preset")),
        reference="lambda_seg_0", data="masked-nocrop", species=("tiger", "yak"), needs_parts=True,
        swept_key="losses.lambda_seg",
        their_model="PAW-ViT on ATRW (their rows lack the orientation loss; ours keep it in both arms)",
        reported=(
            Reported("lambda_seg_0", "ATRW", "cross mAP", 63.5, "PAW-ViT Table 3, row 2 (L_CE + L_TRI)"),
            Reported("lambda_seg_preset", "ATRW", "cross mAP", 64.4, "PAW-ViT Table 3, row 3 (+ L_SS)"),
            Reported("lambda_seg_0", "ATRW", "single mAP", 87.4, "PAW-ViT Table 3, row 2"),
            Reported("lambda_seg_preset", "ATRW", "single mAP", 87.7, "PAW-ViT Table 3, row 3"),
            Reported("lambda_seg_0", "ATRW", "cross R-1", 88.5, "PAW-ViT Table 3, row 2"),
            Reported("lambda_seg_preset", "ATRW", "cross R-1", 90.0, "PAW-ViT Table 3, row 3"),
        )),
    Claim(
        name="care-tokens", paper="CARE", table=_CARE_T1,
        statement="w = 4 learnable prompt tokens suffice: more (8, 16) or fewer (2) do not help.",
        arms=tuple(ClaimArm(_token_arm(w), "care", {"text.prompt_tokens": w}, label=f"w = {w}")
                   for w in (2, 4, 8, 16)),
        reference=_token_arm(4), data="masked-crop", swept_key="text.prompt_tokens", their_model="CARE from CLIP ViT-B/16, mean of ten runs",
        reported=_care_reported(_CARE_T1, _CARE_TOKENS, _token_arm),
        caveat=_CARE_CAVEAT, caveat_key="backbone.pretrained"),
    Claim(
        name="care-margin", paper="CARE", table=_CARE_T2,
        statement="A triplet margin of 0.7 gives the best mAP (on five of eight datasets, ATRW among them).",
        arms=tuple(ClaimArm(_margin_arm(m), "care", {"losses.triplet_margin": m}, label=f"margin {m}")
                   for m in (0.1, 0.3, 0.5, 0.7, 0.9)),
        reference=_margin_arm(0.7), data="masked-crop", swept_key="losses.triplet_margin", their_model="CARE from CLIP ViT-B/16, mean of ten runs",
        reported=_care_reported(_CARE_T2, _CARE_MARGINS, _margin_arm),
        caveat=_CARE_CAVEAT, caveat_key="backbone.pretrained"),
)}


def claim_names() -> list[str]:
    return list(CLAIMS)


def get_claim(name: str) -> Claim:
    if name not in CLAIMS:
        raise ValueError(f"unknown claim {name!r}; claims: {', '.join(CLAIMS)}")
    return CLAIMS[name]
