"""From audio files to batches: decoding and resampling (`audio`), the prepared corpus's records
and folds (`manifest`), analysis frames (`frames`), items and their batches (`dataset`), the
batch order (`sampler`), augmentation (`augment`), and the caches of decoded audio and of frozen
backbones' hidden states (`feature_store`, `states`)."""
