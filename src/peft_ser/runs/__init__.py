"""A run's place on disk: which prepared corpus and folds it uses (`corpus`), and its folder's
layout (`layout`: `RunDir`, `FoldDir`), the one place that names a run folder's files."""
