"""Pre-training, transfer (linear probe, fine-tune, detection, zero-shot) and metrics."""
