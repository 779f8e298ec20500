"""Background removal: mask proposals, foreground models, fusion criteria and masking."""
