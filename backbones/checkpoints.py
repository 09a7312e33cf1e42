"""Fetching, verifying and strictly loading checkpoint files.

Sources: a local path, ``s3://`` or any other fsspec URL (fsspec imported lazily), ``hf://repo
/file[@revision]`` through ``huggingface_hub.hf_hub_download`` (its cache), or ``https://``.
Remote files are cached under ``$UNMUTE_CACHE`` (default ``~/.cache/unmute-bench/checkpoints``).
Files are hashed (sha256) for provenance and verified against the spec when a digest is known.
Pickles are opened with ``weights_only=True``; a file that needs full unpickling is refused
unless the caller trusts it (``trust_pickle=True``).
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import pickle
from pathlib import Path
from urllib.parse import urlparse

import torch
from torch import Tensor, nn

log = logging.getLogger(__name__)


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be fetched, verified or mapped onto the encoder."""


def cache_dir() -> Path:
    return Path(os.environ.get("UNMUTE_CACHE", "~/.cache/unmute-bench")).expanduser() / "checkpoints"


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _fetch_fsspec(url: str) -> Path:
    import fsspec  # lazy: only remote checkpoints need it

    digest = hashlib.sha256(url.encode()).hexdigest()[:16]
    dest = cache_dir() / digest / (Path(urlparse(url).path).name or "checkpoint")
    if dest.exists():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_suffix(dest.suffix + ".part")
    try:
        with fsspec.open(url, "rb") as src, open(tmp, "wb") as out:
            while block := src.read(1 << 20):
                out.write(block)
    except FileNotFoundError as e:
        raise CheckpointError(f"checkpoint {url!r} does not exist: {e}") from e
    except Exception as e:  # credentials, network: re-raised with the URL and the fix
        raise CheckpointError(
            f"could not fetch checkpoint {url!r} ({type(e).__name__}: {e}). Check the URL, your "
            "credentials (AWS_* / fsspec config) and network, or pass a local path."
        ) from e
    tmp.replace(dest)
    return dest


def _fetch_hf(ref: str) -> Path:
    from huggingface_hub import hf_hub_download

    body, _, revision = ref.removeprefix("hf://").partition("@")
    parts = body.split("/")
    if len(parts) < 3:
        raise CheckpointError(
            f"Hugging Face checkpoint {ref!r} must look like hf://<owner>/<repo>/<file>[@revision]."
        )
    repo_id, filename = "/".join(parts[:2]), "/".join(parts[2:])
    try:
        return Path(hf_hub_download(repo_id, filename, revision=revision or None))
    except Exception as e:  # offline, gated, missing file: one clear message
        raise CheckpointError(
            f"could not get {filename!r} from the Hugging Face hub repo {repo_id!r} "
            f"({type(e).__name__}: {e}). If you are offline, download it elsewhere and pass the "
            "local path (or put it in the HF cache; HF_HUB_OFFLINE=1 reads only the cache)."
        ) from e


def resolve(checkpoint: str | os.PathLike[str]) -> Path:
    """Local path of ``checkpoint`` (path, ``hf://``, ``s3://``/fsspec URL or ``https://``)."""
    ref = os.fspath(checkpoint)
    if ref.startswith("hf://"):
        return _fetch_hf(ref)
    if "://" in ref and not ref.startswith("file://"):
        return _fetch_fsspec(ref)
    path = Path(ref.removeprefix("file://")).expanduser()
    if not path.is_file():
        raise CheckpointError(
            f"checkpoint file {str(path)!r} does not exist; pass an existing file, an s3:// URL, "
            "hf://<owner>/<repo>/<file>, 'random', or None for the official checkpoint."
        )
    return path


def verify_sha256(path: Path, digest: str, expected: str | None, prefix: str | None) -> None:
    if expected and digest != expected.lower():
        raise CheckpointError(
            f"sha256 mismatch for {str(path)!r}: got {digest}, expected {expected}. The file is "
            "corrupt or a different release; re-download it or pass sha256=None to skip."
        )
    if prefix and not digest.startswith(prefix.lower()):
        raise CheckpointError(
            f"sha256 mismatch for {str(path)!r}: got {digest}, expected a digest starting with "
            f"{prefix}. The file is corrupt or a different release; re-download it or pass "
            "sha256=None to skip."
        )


def load_file(path: Path, trust_pickle: bool = False) -> object:
    """Read a ``.safetensors`` file or a torch pickle (tensors on CPU)."""
    with open(path, "rb") as f:
        head = f.read(16)
    if path.suffix == ".safetensors" or (len(head) >= 9 and head[8:9] == b"{"):
        from safetensors import SafetensorError
        from safetensors.torch import load_file as st_load

        try:
            return st_load(str(path))
        except SafetensorError as e:
            raise CheckpointError(f"{str(path)!r} is not a readable safetensors file: {e}") from e
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if not trust_pickle:
            raise CheckpointError(
                f"{str(path)!r} needs full unpickling, which can run code ({e}). If you trust the "
                "file, pass trust_pickle=True to create_backbone."
            ) from e
    except (RuntimeError, EOFError, OSError, ValueError) as e:
        raise CheckpointError(
            f"{str(path)!r} is not a readable torch checkpoint ({type(e).__name__}: {e}); it is "
            "truncated or corrupt: re-download it."
        ) from e
    log.warning("loading %s with weights_only=False (trust_pickle=True)", path)
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # any unpickling failure: name the file, not a traceback
        raise CheckpointError(
            f"{str(path)!r} is not a readable torch checkpoint even with trust_pickle=True "
            f"({type(e).__name__}: {e}); it is corrupt or not a checkpoint: re-download it."
        ) from e


def _list(keys: list[str], limit: int = 8) -> str:
    more = f" ... (+{len(keys) - limit} more)" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def load_strict(module: nn.Module, state: dict[str, Tensor], what: str) -> None:
    """Copy ``state`` into ``module``; any missing, unexpected or mis-shaped key is an error
    that names the keys."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = sorted(
        f"{k} {tuple(state[k].shape)} != {tuple(own[k].shape)}"
        for k in set(own) & set(state) if tuple(state[k].shape) != tuple(own[k].shape)
    )
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys: {_list(missing)}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys: {_list(unexpected)}")
        if shapes:
            parts.append(f"{len(shapes)} keys with the wrong shape (file != model): {_list(shapes)}")
        raise CheckpointError(
            f"{what} does not match the encoder: " + "; ".join(parts) + ". Check that the file is "
            "this encoder's official checkpoint and that size= matches it."
        )
    converted = {k: v.to(own[k].dtype) if v.is_floating_point() else v for k, v in state.items()}
    module.load_state_dict(converted, strict=True)
