"""The per-worker training loop (Ray Train), checkpoints, and evaluation of a model on a manifest.

Only ``loop`` imports Ray (``ray.train`` inside the worker); the rest is plain torch.
"""
