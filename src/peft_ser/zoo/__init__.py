"""Released PEFT-SER emotion models by name: cache, checksums, checkpoint conversion.

The PEFT-SER authors released six LoRA (rank 16) models with the convolutional head, trained on
pooled IEMOCAP, MSP-IMPROV, MSP-Podcast and CREMA-D with 10-s windows for four classes (Neutral,
Angry, Sad, Happy). Each is two PyTorch files: the head (``…_conv_output.pt``) and the LoRA
matrices (``…_conv_output_lora.pt``), in the key layout of the authors' own model classes. This
package knows where the files are (in its own cache layout or the original package's), caches
them atomically, checks their sha256 once pinned, renames their keys into this package's
trainable-weight names and keeps the result as safetensors (see ``docs/zoo.md``).
"""

from peft_ser.zoo.cache import (
    CACHE_ENV,
    DEFAULT_CACHE,
    cache_root,
    cached_path,
    download,
    fetch_url,
    pin,
    search_folders,
    sha256_of,
)
from peft_ser.zoo.convert import convert_original_checkpoint, load_original_file
from peft_ser.zoo.load import cached_backbone, load_zoo_model, load_zoo_state
from peft_ser.zoo.table import ZOO, ZooEntry, ZooError, ZooFile, zoo_entry

__all__ = [
    "CACHE_ENV",
    "DEFAULT_CACHE",
    "ZOO",
    "ZooEntry",
    "ZooError",
    "ZooFile",
    "cache_root",
    "cached_backbone",
    "cached_path",
    "convert_original_checkpoint",
    "download",
    "fetch_url",
    "load_original_file",
    "load_zoo_model",
    "load_zoo_state",
    "pin",
    "search_folders",
    "sha256_of",
    "zoo_entry",
]
