"""From audio files to batches: decoding and resampling (`audio`), the prepared corpus's records
and folds (`manifest`), analysis frames (`frames`), datasets and samplers (`dataset`) and the store
of frozen backbones' hidden states (`feature_store`)."""
