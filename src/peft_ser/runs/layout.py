"""A run folder's layout: the names of the files a run writes."""

RUN_CONFIG = "config.yaml"
