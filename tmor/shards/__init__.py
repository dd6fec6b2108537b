"""Webdataset shards: safe tar I/O, the triplet sample codec, the streaming reader, importers
and exporters."""
