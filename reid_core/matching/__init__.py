"""Local-feature matching between two background-free images: keypoints, descriptors, matches and a score.

Plain PyTorch/kornia (no Ray, no MLflow): ``pipelines.match`` runs it over many pairs. The modules, one
job each: ``features`` (what an image's features and a pair's match are, as data), ``images`` (an RGB
array to the tensors kornia takes), ``verification`` (RANSAC on tentative matches), ``sift`` (the
weight-free default), ``lightglue`` (LightGlue on DISK or ALIKED), ``weights`` (where their weights come
from) and ``registry`` (names to matchers; it imports the implementations, they never import it).
"""
