"""A run's place on disk: which prepared corpus and folds it uses, and its folder's layout."""
