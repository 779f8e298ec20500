"""Animal detectors: whole camera-trap photos -> boxes with scores, registered by name (``registry``).

``reference`` reads the exact boxes the synthetic whole photos come with; ``megadetector`` is
MegaDetector v6's Apache-2.0 RT-DETRv2 variant built with transformers. The detection stage
(``reid_core.pipelines.detect``) crops every box into its own manifest row."""
