"""Skeleton arrays and their conventions: joint layouts, transforms, augmentation, the npz codec
and per-frame label segments. A leaf package: it imports nothing else of tmor but the core."""
