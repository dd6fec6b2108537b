"""tmor: skeleton / video / text corpora and T-MOR pre-training for action recognition."""

__version__ = "0.1.0"
