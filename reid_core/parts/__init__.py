"""Part masks: schemes, keypoint sources and the label maps PAW-ViT distils."""
