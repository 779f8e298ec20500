"""The generic per-worker training loop (``loop``), its stages' batches, checkpoints, the evaluation of a
model on a manifest, and where a loop runs (``session``: a Ray Train worker, a Tune trial, or local).

Only ``session`` imports Ray (inside its Ray sessions); the rest is plain torch. ``ray_storage`` names
where Ray keeps runs (paths only). The engine reads nothing of a method's config, only the contract
(``methods.contract``).
"""
