"""The embedding store: token maps computed once per (encoder, weights, front end, dataset,
split) and read, memory-mapped, by every trial.

``entries`` holds the store and its keys, ``writer`` the sharded, resumable writer, ``io`` the
checksummed array files and ``concat`` the zero-copy concatenation of several entries.
"""

from orchestrator.store.entries import (
    ARRAYS,
    FORMAT,
    MANIFEST,
    EmbeddingStore,
    StoredSplit,
    StoreKey,
)
from orchestrator.store.io import ChecksumError

__all__ = [
    "ARRAYS",
    "FORMAT",
    "MANIFEST",
    "ChecksumError",
    "EmbeddingStore",
    "StoreKey",
    "StoredSplit",
]
