"""Corpus stages (one module each) and the runner that maps a stage over shards."""
