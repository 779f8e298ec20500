"""Procedural, learnable re-identification data: tiger-, yak- and elephant-like animals on scene textures.

Every individual has a persistent signature derived from the seed and its id; each *side* has its own
(the flank pattern, horn, ear and tusk seen from the left differ from those seen from the right), so
``entity = f"{individual}_{side}"`` as in ATRW. Images vary in pose (rotation, scale, position, stride,
head and tail), side (the right side is the mirrored body), lighting (brightness, contrast and colour cast
on the animal; the scene is a fixed camera-trap view and keeps its exact pixels) and partial occlusion by
vegetation, which is cut out of the masks: the foreground and part masks are what is visible.

Backgrounds are a fixed set of procedural scenes (camera-trap sites; the same scene is the same pixels).
In ``train`` an individual appears mostly in its own two or three "home" scenes, in ``val``/``test`` an
individual's images get distinct random scenes, so background carries identity information in training
and none at test time: a model that learns the background fails, one trained on masked images does not
(AER's Table 1 in miniature).

Layout: ``DIR/<species>/{images,masks,parts}/<individual>_<index>.png``, ``DIR/<species>/reid_keypoints.json``
(ATRW's 15 keypoints per image in ATRW's file format, also the manifest's ``keypoints`` column) and
``DIR/manifest.parquet``.
Images are lossless PNG: background pixels equal the scene exactly where the mask is 0 (JPEG would blur
that contract and make masks disagree with the pixels at edges), at ~2 ms of encoding per 128 px image
(compress level 1; ~34 kB, against ~10 kB and 0.2 ms for JPEG at quality 95).

The modules, one job each: ``seeds`` (keyed random streams), ``geometry`` (canonical shapes, the pose),
``canvas`` (part labels and tones), ``colours``, ``limbs``, ``tiger``/``yak``/``elephant`` (one species
each), ``species`` (their registry and signatures), ``scenes`` (backgrounds), ``occluders`` (vegetation),
``keypoints`` (ATRW's keypoints from the drawn geometry), ``render`` (one image), ``planning`` (who is photographed where), ``dataset`` (files and the manifest),
``whole_photos`` (whole camera-trap photos with 0-3 animals, exact boxes and masks, for detection).
The command line is ``reid_core.cli.synthetic``.
"""

from reid_core.data.synthetic.canvas import BODY, FRONT_LEGS, HEAD, HIND_LEGS, PART_NAMES, TAIL
from reid_core.data.synthetic.dataset import DEFAULT_SPECIES, SPLIT_DISJOINT, generate
from reid_core.data.synthetic.geometry import Pose
from reid_core.data.synthetic.planning import DEFAULT_CAMERAS, HOME_FRACTION, plan
from reid_core.data.synthetic.render import DEFAULT_OCCLUSION, Rendered, render_image
from reid_core.data.synthetic.scenes import DEFAULT_SCENES, SCENE_KINDS, scene_textures
from reid_core.data.synthetic.species import SPECIES, SpeciesPreset, individual_signature
from reid_core.data.synthetic.whole_photos import generate_whole_photos, read_truth

__all__ = [
    "BODY", "DEFAULT_CAMERAS", "DEFAULT_OCCLUSION", "DEFAULT_SCENES", "DEFAULT_SPECIES", "FRONT_LEGS", "HEAD",
    "HIND_LEGS", "HOME_FRACTION", "PART_NAMES", "SCENE_KINDS", "SPECIES", "SPLIT_DISJOINT", "TAIL", "Pose",
    "Rendered", "SpeciesPreset", "generate", "generate_whole_photos", "read_truth", "individual_signature", "plan", "render_image", "scene_textures",
]
