"""Dataset adapters on tiny fixtures written in each dataset's exact on-disk format (datasets.md)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import polars as pl
import pytest
from PIL import Image

from reid_core.data import manifest
from reid_core.data.adapters import (
    ADAPTERS,
    DatasetFormatError,
    MissingInputError,
    load_atrw,
    load_elpephants,
    load_folders,
    load_wildlife,
    load_yakreid,
)


def image(path: Path) -> Path:
    """A real (tiny) image in the format its suffix names."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = "PNG" if path.suffix.lower() == ".png" else "JPEG"
    Image.new("RGB", (8, 6), (120, 80, 40)).save(path, format=fmt)
    return path


def text(path: Path, content: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content, encoding="utf-8")
    return path


def row(df: pl.DataFrame, image_id: str) -> dict:
    rows = df.filter(pl.col("image_id") == image_id).to_dicts()
    assert len(rows) == 1, f"{image_id} occurs {len(rows)} times"
    return rows[0]


def test_registry_names_every_adapter():
    assert ADAPTERS == {"atrw": load_atrw, "yakreid": load_yakreid, "elpephants": load_elpephants,
                        "wildlife": load_wildlife, "folders": load_folders}


# --- ATRW ---------------------------------------------------------------------------------------

TRAIN_FILES = {"000384.jpg": 0, "000584.jpg": 0, "000600.jpg": 0, "001983.jpg": 1, "002000.jpg": 1, "002100.jpg": 2}
GT = [
    {"query": "sing", "entityid": 199, "frame": [23, 4, 657], "imgid": 0},
    {"query": "multi", "entityid": 235, "frame": [31, 4, 1089], "imgid": 4096},
    {"query": "multi", "entityid": 235, "frame": [30, 2, 10], "imgid": 5},
]


def atrw_root(tmp_path: Path, layout: str = "wd") -> Path:
    root = tmp_path / "atrw"
    # No header, and no newline after the last line.
    text(root / "atrw_anno_reid_train" / "reid_list_train.csv",
         "\n".join(f"{eid},{name}" for name, eid in TRAIN_FILES.items()))
    for name in TRAIN_FILES:
        image(root / "atrw_reid_train" / "train" / name)
    text(root / "atrw_anno_reid_train" / "reid_keypoints_train.json",
         json.dumps({"000384.jpg": [float(i) for i in range(45)]}))
    gt_dir, test_dir = ("annotations", "atrw_reid_test/test") if layout == "wd" else ("atrw_anno_reid_test", "test")
    text(root / gt_dir / "gt_test_plain.json", json.dumps(GT))
    for item in GT:
        image(root / test_dir / f"{item['imgid']:06d}.jpg")
    return root


def test_atrw_wildlife_datasets_layout(tmp_path):
    root = atrw_root(tmp_path)
    df = load_atrw(root, check_files=True)
    assert df.height == 9
    assert df.group_by("split").len().sort("split").rows() == [("test", 3), ("train", 6)]
    assert df.columns[:10] == list(manifest.CORE_SCHEMA)
    test = row(df, "atrw/test/000000")
    assert (test["entity"], test["individual"], test["camera"], test["frame"]) == ("199", "199", "23-4", 657)
    assert (test["split"], test["role"], test["atrw_query"], test["atrw_imgid"]) == ("test", "both", "sing", 0)
    assert test["image_uri"] == str(root / "atrw_reid_test" / "test" / "000000.jpg")
    multi = row(df, "atrw/test/004096")
    assert (multi["entity"], multi["camera"], multi["frame"], multi["atrw_query"]) == ("235", "31-4", 1089, "multi")
    train = row(df, "atrw/train/001983")
    assert (train["entity"], train["individual"], train["split"], train["role"]) == ("1", "1", "train", None)
    assert (train["camera"], train["frame"], train["side"], train["atrw_query"]) == (None, None, "unknown", None)
    assert row(df, "atrw/train/000384")["keypoints"] == [float(i) for i in range(45)]
    assert train["keypoints"] is None
    assert df.schema["keypoints"] == pl.List(pl.Float64) and df.schema["frame"] == pl.Int64


def test_atrw_aer_layout_finds_ground_truth_and_test_folder(tmp_path):
    root = atrw_root(tmp_path, layout="aer")
    df = load_atrw(root, check_files=True)
    assert row(df, "atrw/test/000005")["image_uri"] == str(root / "test" / "000005.jpg")
    assert row(df, "atrw/test/000005")["camera"] == "30-2"


def test_atrw_explicit_gt_path(tmp_path):
    root = atrw_root(tmp_path)
    moved = root / "elsewhere" / "plain.json"
    moved.parent.mkdir()
    (root / "annotations" / "gt_test_plain.json").rename(moved)
    assert load_atrw(root, gt="elsewhere/plain.json").filter(pl.col("split") == "test").height == 3


def test_atrw_sides_fill_each_flank_and_val_holds_out_per_entity(tmp_path):
    root = atrw_root(tmp_path)
    # PGCFL format; entity 0 is labelled on one image only, entity 2 not at all.
    sides = text(tmp_path / "train.txt", "train/0/000384.jpg 0 0\ntrain/1/001983.jpg 1 1\ntrain/1/002000.jpg 1 1\n")
    df = load_atrw(root, sides=sides, val_per_entity=1)
    sides_by_entity = dict(df.filter(pl.col("split") != "test").group_by("entity")
                           .agg(pl.col("side").unique().sort()).rows())
    assert sides_by_entity == {"0": ["left"], "1": ["right"], "2": ["unknown"]}
    assert df.filter(pl.col("split") == "test")["side"].unique().to_list() == ["unknown"]
    # The first image by name of each entity moves to val; a single-image entity stays in train.
    assert sorted(df.filter(pl.col("split") == "val")["image_id"]) == ["atrw/train/000384", "atrw/train/001983"]
    assert row(df, "atrw/train/002100")["split"] == "train"


def test_atrw_sides_folder_must_match_entity(tmp_path):
    root = atrw_root(tmp_path)
    sides = text(tmp_path / "train.txt", "train/0/000384.jpg 0 0\ntrain/5/001983.jpg 1 1\n")
    with pytest.raises(DatasetFormatError, match=r"train.txt line 2: train/5/001983.jpg is in folder 5 .* entity 1"):
        load_atrw(root, sides=sides)


def test_atrw_missing_ground_truth_names_paths_and_flag(tmp_path):
    root = atrw_root(tmp_path)
    (root / "annotations" / "gt_test_plain.json").unlink()
    with pytest.raises(MissingInputError) as error:
        load_atrw(root)
    message = str(error.value)
    assert str(root / "annotations" / "gt_test_plain.json") in message
    assert str(root / "atrw_anno_reid_test" / "gt_test_plain.json") in message and "--gt" in message


def test_atrw_malformed_train_line_and_gt_item(tmp_path):
    root = atrw_root(tmp_path)
    csv = root / "atrw_anno_reid_train" / "reid_list_train.csv"
    csv.write_text("0,000384.jpg\nzero,000584.jpg\n")
    with pytest.raises(DatasetFormatError, match=r"reid_list_train.csv line 2: column 'entityid' must be an "
                                                 r"integer, got 'zero'"):
        load_atrw(root)
    csv.write_text("0,000384.jpg\n")
    text(root / "annotations" / "gt_test_plain.json", json.dumps([GT[0], {"query": "sing", "entityid": 3}]))
    with pytest.raises(DatasetFormatError, match=r"gt_test_plain.json item 1 .*keys"):
        load_atrw(root)


def test_atrw_entity_in_train_and_test_is_a_manifest_error(tmp_path):
    root = atrw_root(tmp_path)
    text(root / "atrw_anno_reid_train" / "reid_list_train.csv", "199,000384.jpg\n")
    with pytest.raises(manifest.ManifestError, match=r"entities \(e.g. \['199'\]\) are in both 'train' and 'test'"):
        load_atrw(root)


# --- YakReID-103 --------------------------------------------------------------------------------

def aer_yak_root(tmp_path: Path) -> Path:
    root = tmp_path / "aer"
    datalist = root / "datalist"
    text(datalist / "yak_mytrain_aligned.txt",
         "train/302/00002_001.jpg 0 1\n"
         "train/302/00002_002.jpg 0 1\n"
         "train/303/00003_001.jpg 1 0\n"
         "train/303/00003 b_002.jpg 1 0\n"  # a space in the file name
         "train/304/00004_001.jpg 2\n")  # no direction label
    text(datalist / "yak_myval_aligned.txt", "train/302/00002_003.jpg 0 1\ntrain/303/00003_003.jpg 1 0")
    text(datalist / "yak_probe_hard.txt", "1/00001_001.jpg 122\n5/00005_001.jpg 123\n\n\n\n")  # 3 blank lines
    text(datalist / "yak_gallery_hard.txt", "1/00001_002.jpg 122\n5/00005_002.jpg 123\n7/007005.jpg 124")
    text(datalist / "yak_probe_simple.txt", "1/00001_001.jpg 122\n1/00001_003.jpg 122\n5/00005_001.jpg 123\n")
    text(datalist / "yak_gallery_simple.txt", "1/00001_002.jpg 122\n5/00005_002.jpg 123\n")
    return root


def test_yak_aer_lists(tmp_path):
    root = aer_yak_root(tmp_path)
    df = load_yakreid(root, train_images="Animal-2", test_images="val")
    assert df.height == 12
    assert df.group_by("split", "role").len().sort("split", "role").rows() == [
        ("test", "gallery", 3), ("test", "query", 2), ("train", None, 5), ("val", None, 2)]
    first = row(df, "yakreid/train/train/302/00002_001")
    assert (first["individual"], first["entity"], first["side"], first["label"]) == ("2", "2", "right", 0)
    assert first["image_uri"] == str(root / "Animal-2" / "train" / "302" / "00002_001.jpg")
    spaced = row(df, "yakreid/train/train/303/00003 b_002")
    assert (spaced["individual"], spaced["side"]) == ("3", "left")
    assert spaced["image_uri"].endswith("train/303/00003 b_002.jpg")
    no_direction = row(df, "yakreid/train/train/304/00004_001")
    assert (no_direction["entity"], no_direction["side"]) == ("4", "unknown")
    assert row(df, "yakreid/train/train/302/00002_003")["split"] == "val"
    probe = row(df, "yakreid/test/1/00001_001")
    assert (probe["split"], probe["role"], probe["entity"], probe["label"]) == ("test", "query", "1", 122)
    assert probe["image_uri"] == str(root / "val" / "1" / "00001_001.jpg")
    assert (probe["source_file"], probe["source_line"]) == ("yak_probe_hard.txt", 1)
    odd = row(df, "yakreid/test/7/007005")  # the release's one file not named <id>_<index>
    assert (odd["individual"], odd["role"]) == ("7", "gallery")


def test_yak_simple_level_selects_simple_lists(tmp_path):
    df = load_yakreid(aer_yak_root(tmp_path), level="simple")
    assert df.filter(pl.col("role") == "query").height == 3
    assert df.filter(pl.col("role") == "gallery").height == 2


def test_yak_paw_vit_lists_with_flipped_copies(tmp_path):
    root = tmp_path / "YakReID-103"
    text(root / "train.txt",
         "train/2/00002_001.jpg 0 1\ntrain/2/00002_002.jpg 0 1\ntrain/3/00003_001.jpg 1 1\n"
         "train/201/00002_001.jpg 121 0\ntrain/201/00002_002.jpg 121 0\n")  # flipped: label + 121, other side
    text(root / "query.txt", "val/1/00001_001.jpg 122\n")
    text(root / "gallery.txt", "val/1/00001_002.jpg 122\nval/9/00009_001.jpg 123\n")
    df = load_yakreid(root, train_list="train.txt", probe_list="query.txt", gallery_list="gallery.txt")
    assert df.height == 8 and df.filter(pl.col("split") == "val").height == 0
    original, flipped = row(df, "yakreid/train/train/2/00002_001"), row(df, "yakreid/train/train/201/00002_001")
    assert (original["individual"], original["entity"], original["side"]) == ("2", "2-right", "right")
    assert (flipped["individual"], flipped["entity"], flipped["side"], flipped["label"]) == ("2", "2-left", "left", 121)
    assert row(df, "yakreid/train/train/3/00003_001")["entity"] == "3"
    probe = row(df, "yakreid/test/val/1/00001_001")
    assert probe["image_uri"] == str(root / "val" / "1" / "00001_001.jpg") and probe["individual"] == "1"


def test_yak_malformed_line_names_file_and_line(tmp_path):
    root = aer_yak_root(tmp_path)
    text(root / "datalist" / "yak_probe_hard.txt", "1/00001_001.jpg 122\nfoo\n")
    with pytest.raises(DatasetFormatError) as error:
        load_yakreid(root)
    assert "yak_probe_hard.txt line 2: expected 'path label', got 'foo'. Fix:" in str(error.value)


@pytest.mark.parametrize("line, problem", [
    ("train/302/00002_001.jpg 0 7", "direction must be 0 (left) or 1 (right), got 7"),
    ("train/302/00002_001.jpg zero 1", "expected 'path label direction'"),
    ("train/302/00002_001.jpg 0 1 5", "expected 'path label direction'"),
])
def test_yak_bad_train_lines(tmp_path, line, problem):
    root = aer_yak_root(tmp_path)
    text(root / "datalist" / "yak_mytrain_aligned.txt", f"train/302/00002_002.jpg 0 1\n{line}\n")
    with pytest.raises(DatasetFormatError, match=rf"yak_mytrain_aligned.txt line 2: {re.escape(problem)}"):
        load_yakreid(root)


def test_yak_labels_must_match_folders(tmp_path):
    root = aer_yak_root(tmp_path)
    text(root / "datalist" / "yak_mytrain_aligned.txt", "train/302/00002_001.jpg 0 1\ntrain/302/00002_002.jpg 5 1\n")
    with pytest.raises(DatasetFormatError, match=r"yak_mytrain_aligned.txt line 2: entity '2' has label 5 here but 0"):
        load_yakreid(root)


def test_yak_missing_list_names_path_and_flag(tmp_path):
    root = aer_yak_root(tmp_path)
    with pytest.raises(MissingInputError) as error:
        load_yakreid(root, gallery_list="lists/gallery.txt")
    assert str(root / "lists" / "gallery.txt") in str(error.value) and "--gallery-list" in str(error.value)
    with pytest.raises(MissingInputError, match="--val-list"):  # an explicit val list must exist
        load_yakreid(root, val_list="nope.txt")


# --- ELPephants ---------------------------------------------------------------------------------

ELE_HEADER = "view,part,date,mod_name,new_name,class_id,new_id,train,train_idx_aligned,old_name"
ELE_ROWS = [
    "left,,31Jan2015,3897_Stasny left_31Jan2015.jpg,0.jpg,94,416,True,333,3897_Stasny left_31Jan2015.jpg",
    "left,,Oct2003,4083_Thekla I left_Oct2003.jpg,6.jpg,81,406,False,-1,4083_Thekla I left_Oct2003.jpg",
    "right,head,Nov2010,1673_Halo I righthead_Nov2010.jpg,152.jpg,443,286,True,232,1673_Halo I righthead_Nov2010.jpg",
    "right,,Oct2003,4083_Thekla I right_Oct2003.jpg,7.jpg,357,407,False,-1,4083_Thekla I right_Oct2003.jpg",
]


def ele_root(tmp_path: Path, rows: list[str] = ELE_ROWS) -> Path:
    root = tmp_path / "elephants"
    text(root / "re_mapped_filtered_anno_elephant.csv", "\n".join([ELE_HEADER, *rows]) + "\n\n\n")  # blank tail
    for line in rows:
        fields = line.split(",")
        image(root / "images" / fields[4])
        image(root / "originals" / fields[9])
    return root


def test_elpephants_aer_csv(tmp_path):
    root = ele_root(tmp_path)
    df = load_elpephants(root, check_files=True)
    assert df.height == 4
    stasny = row(df, "elpephants/0")
    assert (stasny["entity"], stasny["individual"], stasny["side"]) == ("94", "94", "left")
    assert (stasny["split"], stasny["role"], stasny["new_id"]) == ("train", None, 416)
    assert stasny["image_uri"] == str(root / "images" / "0.jpg")
    halo = row(df, "elpephants/152")
    assert (halo["entity"], halo["individual"], halo["side"], halo["part"], halo["date"]) == (
        "443", "167", "right", "head", "Nov2010")
    thekla_left, thekla_right = row(df, "elpephants/6"), row(df, "elpephants/7")
    assert (thekla_left["split"], thekla_left["role"], thekla_left["entity"]) == ("test", "both", "81")
    # One elephant, two sides: the same individual, two entities.
    assert thekla_right["individual"] == thekla_left["individual"] == "81" and thekla_right["entity"] == "357"
    assert stasny["part"] is None and stasny["camera"] is None and stasny["frame"] is None


def test_elpephants_original_names_with_spaces(tmp_path):
    root = ele_root(tmp_path)
    df = load_elpephants(root, name_column="old_name", images="originals", check_files=True)
    assert row(df, "elpephants/6")["image_uri"] == str(root / "originals" / "4083_Thekla I left_Oct2003.jpg")


@pytest.mark.parametrize("bad, problem", [
    (ELE_ROWS[2].replace("right,head", "front,head"), "'view' must be left or right, got 'front'"),
    (ELE_ROWS[2].replace(",443,", ",43,"), "class_id 43 does not fit view 'right'"),
    (ELE_ROWS[2].replace(",True,", ",maybe,"), "'train' must be True or False, got 'maybe'"),
    (ELE_ROWS[2].replace(",443,", ",x,"), "column 'class_id' must be an integer, got 'x'"),
])
def test_elpephants_bad_row_names_csv_line(tmp_path, bad, problem):
    root = ele_root(tmp_path, [ELE_ROWS[0], ELE_ROWS[1], bad])
    with pytest.raises(DatasetFormatError, match=rf"re_mapped_filtered_anno_elephant.csv line 4: {re.escape(problem)}"):
        load_elpephants(root)


def test_elpephants_wrong_header(tmp_path):
    root = ele_root(tmp_path)
    text(root / "other.csv", "name,class\n0.jpg,1\n")
    with pytest.raises(DatasetFormatError, match=r"other.csv: missing column\(s\) view"):
        load_elpephants(root, csv="other.csv")


# --- WildlifeDatasets metadata.csv --------------------------------------------------------------

def test_wildlife_animalclef_database_and_query(tmp_path):
    root = tmp_path / "AnimalCLEF2025"
    text(root / "metadata.csv", "\n".join([
        "image_id,identity,path,date,orientation,species,split,dataset",
        "0,LynxID2025_lynx_37,images/LynxID2025/database/a 1.jpg,2020-01-02 00:00:00,left,lynx,database,LynxID2025",
        "1,LynxID2025_lynx_37,images/LynxID2025/database/a 2.jpg,,front,lynx,database,LynxID2025",
        "2,SeaTurtleID2022_t001,images/SeaTurtleID2022/database/t.jpg,,right,loggerhead turtle,database,"
        "SeaTurtleID2022",
        "3,,images/LynxID2025/query/q 1.jpg,,right,lynx,query,LynxID2025",
        "4,unknown,images/SeaTurtleID2022/query/q.jpg,,,loggerhead turtle,query,SeaTurtleID2022",
    ]))
    df = load_wildlife(root)
    assert df.height == 5
    first = row(df, "AnimalCLEF2025/0")
    assert (first["individual"], first["entity"], first["side"]) == ("LynxID2025_lynx_37",) * 2 + ("left",)
    assert (first["split"], first["role"], first["species"]) == ("test", "gallery", "lynx")
    assert (first["date"], first["orientation"], first["dataset"]) == ("2020-01-02 00:00:00", "left", "LynxID2025")
    assert first["image_uri"] == str(root / "images" / "LynxID2025" / "database" / "a 1.jpg")
    assert (first["source_image_id"], first["original_split"]) == ("0", "database")
    assert row(df, "AnimalCLEF2025/1")["side"] == "unknown"  # front is not a flank
    for query_id in ("AnimalCLEF2025/3", "AnimalCLEF2025/4"):
        query = row(df, query_id)
        assert (query["individual"], query["entity"], query["split"], query["role"]) == (None, None, "test", "query")
    assert row(df, "AnimalCLEF2025/2")["species"] == "loggerhead turtle"


def test_wildlife_reid_10k_shares_identities_across_splits(tmp_path):
    root = tmp_path / "WildlifeReID-10k"
    text(root / "metadata.csv", "\n".join([
        "identity,path,date,orientation,species,split,dataset,cluster_id",
        "BelugaID_1,images/BelugaID/x.jpg,,top,Beluga,train,BelugaID,",
        "BelugaID_1,images/BelugaID/y.jpg,,,,test,BelugaID,BelugaID_1_0",
        "MacaqueFaces_7,images/MacaqueFaces/z.jpg,,,,train,MacaqueFaces,",
    ]) + "\n")
    df = load_wildlife(root, prefix="wr10k")  # train and test share BelugaID_1: allowed here
    assert df["image_id"].to_list() == ["wr10k/0", "wr10k/1", "wr10k/2"]
    assert df["split"].to_list() == ["train", "test", "train"] and df["role"].to_list() == [None, None, None]
    assert df["species"].to_list() == ["beluga", "belugaid", "macaquefaces"]  # species, else the dataset
    assert row(df, "wr10k/1")["cluster_id"] == "BelugaID_1_0"


def test_wildlife_unknown_identity_on_train_rows(tmp_path):
    root = tmp_path / "wd"
    text(root / "metadata.csv", "identity,path,split,species\nA,a.jpg,train,lynx\nunknown,b.jpg,train,lynx\n"
                                "B,c.jpg,test,lynx\n")
    with pytest.raises(DatasetFormatError, match=r"metadata.csv line 3 \(1 row\(s\) in all\): identity 'unknown'.*"
                                                 r"--drop-unknown"):
        load_wildlife(root)
    assert load_wildlife(root, drop_unknown=True)["image_id"].to_list() == ["wd/0", "wd/2"]


def test_wildlife_bad_split_and_missing_species(tmp_path):
    root = tmp_path / "wd"
    text(root / "metadata.csv", "identity,path,split\nA,a.jpg,train\nB,b.jpg,validation\n")
    with pytest.raises(DatasetFormatError, match=r"metadata.csv line 3 .*unknown split 'validation'"):
        load_wildlife(root)
    text(root / "metadata.csv", "identity,path,split\nA,a.jpg,train\n")
    with pytest.raises(DatasetFormatError, match="--species"):
        load_wildlife(root)
    assert load_wildlife(root, species="Lynx")["species"].to_list() == ["lynx"]


def test_wildlife_saved_dataframe_with_original_split_and_clashing_columns(tmp_path):
    root = tmp_path / "wd"
    text(root / "metadata.csv", "image_id,identity,path,species,original_split,side,keypoints\n"
                                "a1,A,x.jpg,\"['Lynx']\",train,L,\"[1.0, 2.0]\"\n"
                                "b2,B,y.jpg,nan,test,R,\n")
    df = load_wildlife(root, species="cat")
    assert df["split"].to_list() == ["train", "test"] and df["species"].to_list() == ["lynx", "cat"]
    assert df["metadata_side"].to_list() == ["L", "R"] and df["side"].to_list() == ["unknown", "unknown"]
    assert df["original_split"].to_list() == ["train", "test"] and df["keypoints"][0] == "[1.0, 2.0]"


# --- Folder per individual ----------------------------------------------------------------------

def folders_root(tmp_path: Path) -> Path:
    root = tmp_path / "lynx"
    for individual, count in {"anna": 3, "bert": 2, "carl": 4, "dora": 1, "emil": 3, "fritz": 2}.items():
        for k in range(count):
            image(root / individual / f"{k}.jpg")
    image(root / "carl" / "night" / "n 1.PNG")  # nested, spaces, upper-case suffix
    image(root / "dora" / "extra.jpeg")
    text(root / "anna" / "notes.txt", "not an image")
    image(root / "anna" / ".hidden.jpg")
    image(root / ".thumbs" / "x.jpg")
    return root


def test_folders_default_all_train(tmp_path):
    root = folders_root(tmp_path)
    df = load_folders(root, species="Lynx", check_files=True)
    assert df.height == 17 and set(df["split"]) == {"train"} and df["role"].null_count() == 17
    nested = row(df, "lynx/carl/night/n 1.PNG")
    assert (nested["individual"], nested["entity"], nested["species"], nested["side"]) == (
        "carl", "carl", "lynx", "unknown")
    assert sorted(df["individual"].unique()) == ["anna", "bert", "carl", "dora", "emil", "fritz"]


def test_folders_split_individuals_deterministically_with_queries(tmp_path):
    root = folders_root(tmp_path)
    df = load_folders(root, species="lynx", test_fraction=0.5, seed=3, query_per_entity=1)
    again = load_folders(root, species="lynx", test_fraction=0.5, seed=3, query_per_entity=1)
    assert df.equals(again)
    per_individual = df.group_by("individual").agg(pl.col("split").n_unique()).get_column("split")
    assert per_individual.to_list() == [1] * 6  # never split an individual
    test = df.filter(pl.col("split") == "test")
    assert test["individual"].n_unique() == 3
    roles = test.group_by("individual").agg((pl.col("role") == "query").sum().alias("q"), pl.len().alias("n"))
    for _, queries, n in roles.rows():
        assert queries == min(1, n - 1)  # one query each, and a one-image individual stays gallery
    assert set(test["role"]) <= {"query", "gallery"}
    other_seed = load_folders(root, species="lynx", test_fraction=0.5, seed=4)
    assert other_seed.filter(pl.col("role") == "both")["individual"].n_unique() == 3


def test_folders_errors(tmp_path):
    root = folders_root(tmp_path)
    with pytest.raises(DatasetFormatError, match="--species"):
        load_folders(root, species="")
    with pytest.raises(DatasetFormatError, match="--test-fraction"):
        load_folders(root, species="lynx", test_fraction=1.5)
    (tmp_path / "empty").mkdir()
    with pytest.raises(MissingInputError, match=r"no images found in .*empty/<individual>/"):
        load_folders(tmp_path / "empty", species="lynx")
    with pytest.raises(MissingInputError, match="--root"):
        load_folders(tmp_path / "absent", species="lynx")
