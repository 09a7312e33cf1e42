"""Staging: download a dataset's official files once into ``data_root/<name>/``.

Where a network exists, ``prepare`` fetches the real sources (archive URLs with a progress
bar, Hugging Face files through ``huggingface_hub``) and extracts them; the folder appears by
an atomic rename with a ``.staged`` stamp, so an interrupted download is never mistaken for a
dataset. Without a network it fails with a message that says how to stage by hand. A local
archive or folder passed as ``source`` is staged the same way (offline machines).
"""

from __future__ import annotations

import ast
import json
import logging
import os
import shutil
import subprocess
import tarfile
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

from orchestrator.datasets.lock import clear_stale_temps, file_lock
from orchestrator.datasets.spec import DatasetError, DatasetSpec

log = logging.getLogger(__name__)

ZENODO_FSD50K = "https://zenodo.org/records/4060432/files"
FSD50K_FILES = (
    ("FSD50K.ground_truth.zip",),
    ("FSD50K.metadata.zip",),
    tuple(f"FSD50K.dev_audio.z{i:02d}" for i in range(1, 6)) + ("FSD50K.dev_audio.zip",),
    ("FSD50K.eval_audio.z01", "FSD50K.eval_audio.zip"),
)
AUDIOSET_CSVS = ("balanced_train_segments.csv", "eval_segments.csv", "class_labels_indices.csv")
BIRDSET_REPO = "DBD-research-group/BirdSet"
BIRDSET_SHARDS = {  # archives per config, as listed by the dataset's loading script
    "PER": (11, 1), "NES": (13, 1), "UHH": (5, 1), "HSN": (7, 1), "NBP": (32, 1),
    "POW": (9, 1), "SNE": (21, 1),
}  # fmt: skip
BIRDSET_CLASS_LISTS = {
    "HSN": "BIRD_NAMES_HIGH_SIERRAS", "POW": "BIRD_NAMES_POWDERMILL_NATURE",
    "PER": "BIRD_NAMES_AMAZON_BASIN", "NES": "BIRD_NAMES_COLUMBIA_COSTA_RICA",
    "SNE": "BIRD_NAMES_SIERRA_NEVADA", "UHH": "BIRD_NAMES_HAWAII", "NBP": "BIRD_NAMES_NIPS4BPLUS",
}  # fmt: skip


def is_staged(spec: DatasetSpec, data_root: str | os.PathLike) -> bool:
    from orchestrator.datasets.api import _exists, join

    return _exists(join(data_root, spec.folder_name, ".staged"))


def prepare(
    spec: DatasetSpec,
    data_root: str | os.PathLike,
    progress: bool = True,
    audio_dir: str | None = None,
) -> Path | str:
    """Stage ``spec`` under ``data_root/<folder>/`` (no-op when already staged).

    ``data_root`` may be an fsspec URL (``s3://bucket/data``): the dataset is staged in a local
    temporary folder, uploaded, and its ``.staged`` stamp written last."""
    if "://" in os.fspath(data_root):
        return _prepare_remote(spec, os.fspath(data_root), progress, audio_dir)
    root = Path(data_root)
    final = root / spec.folder_name
    if is_staged(spec, root):
        return final
    if spec.synthetic:
        from orchestrator.datasets.synth import ensure_generated

        return ensure_generated(spec, root)
    root.mkdir(parents=True, exist_ok=True)
    with file_lock(root / f".{spec.folder_name}.lock"):
        if is_staged(spec, root):
            return final
        clear_stale_temps(root, spec.folder_name)
        tmp = root / f".{spec.folder_name}.tmp-{os.getpid()}"
        tmp.mkdir(parents=True)
        try:
            STAGERS[spec.fmt](spec, tmp, progress)
            if spec.fmt == "audioset" and audio_dir:
                (tmp / "audio").symlink_to(Path(audio_dir).resolve(), target_is_directory=True)
        except DatasetError as err:
            shutil.rmtree(tmp, ignore_errors=True)
            raise DatasetError(str(err).replace("NAME", spec.name)) from err
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        stamp = {"source": spec.source, "version": spec.version, "time": time.time()}
        (tmp / ".staged").write_text(json.dumps(stamp))
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
    if spec.fmt == "audioset" and not audio_dir:
        log.warning(
            "as20k: the official CSVs are staged; AudioSet audio is not distributed by "
            "Google. Put the clips under %s/audio/ (or pass --audio-dir).",
            final,
        )
    return final


def _prepare_remote(spec: DatasetSpec, url: str, progress: bool, audio_dir: str | None) -> str:
    import tempfile

    import fsspec

    from orchestrator.datasets.api import join

    final = join(url, spec.folder_name)
    if is_staged(spec, url):
        return final
    if spec.synthetic:
        log.info("%s is generated on every node on first use; nothing to upload", spec.name)
        return final
    fs, remote = fsspec.core.url_to_fs(final)
    with tempfile.TemporaryDirectory(prefix=f"stage-{spec.name}-") as tmp:
        local = Path(prepare(spec, tmp, progress, audio_dir))
        files = sorted(p for p in local.rglob("*") if p.is_file() and p.name != ".staged")
        log.info("uploading %d files of %s to %s", len(files), spec.name, final)
        for path in files:
            fs.put_file(str(path), f"{remote}/{path.relative_to(local).as_posix()}")
        fs.put_file(str(local / ".staged"), f"{remote}/.staged")  # last: marks it complete
    return final


def fetch(url: str, dest: Path, progress: bool = True) -> Path:
    """Download ``url`` (http(s), file path, or fsspec URL) to ``dest`` with a progress bar."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    if os.path.exists(url):
        shutil.copyfile(url, dest)
        return dest
    if not url.startswith(("http://", "https://")):
        import fsspec

        fsspec.open(url).fs.get(url, str(dest))
        return dest
    from tqdm.auto import tqdm

    tmp = dest.with_name(dest.name + ".part")
    try:
        with urllib.request.urlopen(url, timeout=60) as resp, open(tmp, "wb") as out:
            total = int(resp.headers.get("Content-Length") or 0) or None
            with tqdm(
                total=total, unit="B", unit_scale=True, desc=dest.name, disable=not progress
            ) as bar:
                while chunk := resp.read(1 << 20):
                    out.write(chunk)
                    bar.update(len(chunk))
    except (urllib.error.URLError, OSError, TimeoutError) as err:
        tmp.unlink(missing_ok=True)
        raise DatasetError(
            f"cannot download {url}: {err}. This machine seems to have no network access. "
            "Download the file elsewhere and run `python -m orchestrator.data NAME --prepare "
            "--source /path/to/it`, or set `source:` in sweeps/dataset/NAME.yaml to a folder "
            "or s3:// prefix holding the extracted dataset."
        ) from err
    os.replace(tmp, dest)
    return dest


def hf_download(repo: str, filename: str, dest: Path, revision: str | None = None) -> Path:
    """One file of a Hugging Face dataset repo (progress bar by huggingface_hub)."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        path = hf_hub_download(
            repo, filename, repo_type="dataset", revision=revision, local_dir=dest
        )
    except (HfHubHTTPError, LocalEntryNotFoundError, OSError) as err:
        raise DatasetError(
            f"cannot download {filename} from the Hugging Face dataset {repo} "
            f"(revision {revision or 'main'}): {err}. Without network access, copy the "
            "dataset's parquet files to a folder or s3:// prefix and set `source:` to it."
        ) from err
    return Path(path)


def extract(archive: Path, into: Path, flat: bool = False) -> None:
    """Extract a zip or tar archive; ``flat`` drops folders (BirdSet audio shards)."""
    into.mkdir(parents=True, exist_ok=True)
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as z:
            z.extractall(into)
        return
    with tarfile.open(archive) as t:
        members = [m for m in t.getmembers() if m.isfile() or not flat]
        if flat:
            for m in members:
                m.name = os.path.basename(m.name)
        t.extractall(into, members=members, filter="data")


def _source_file(spec: DatasetSpec, tmp: Path, name: str, progress: bool) -> Path:
    src = spec.source
    if os.path.isdir(src):
        shutil.copytree(src, tmp, dirs_exist_ok=True)
        return tmp
    return fetch(src, tmp / ".download" / name, progress)


def _stage_archive(spec: DatasetSpec, tmp: Path, progress: bool) -> None:
    name = spec.source.rstrip("/").rsplit("/", 1)[-1] or f"{spec.name}.archive"
    got = _source_file(spec, tmp, name, progress)
    if got != tmp:
        extract(got, tmp)
        shutil.rmtree(tmp / ".download", ignore_errors=True)


def _stage_fsd50k(spec: DatasetSpec, tmp: Path, progress: bool) -> None:
    if os.path.isdir(spec.source):
        shutil.copytree(spec.source, tmp, dirs_exist_ok=True)
        return
    dl = tmp / ".download"
    for group in FSD50K_FILES:
        parts = [fetch(f"{spec.source.rstrip('/')}/files/{n}", dl / n, progress) for n in group]
        archive = parts[-1]
        if len(parts) > 1:  # a split zip: join it with Info-ZIP (`zip -s 0`)
            joined = dl / f"joined-{archive.name}"
            if shutil.which("zip") is None:
                raise DatasetError(
                    "FSD50K's audio is a split zip; install Info-ZIP `zip` "
                    "(apt-get install zip) to join it, then --prepare again."
                )
            subprocess.run(["zip", "-q", "-s", "0", str(archive), "--out", str(joined)], check=True)
            archive = joined
        extract(archive, tmp)
    shutil.rmtree(dl, ignore_errors=True)


def _stage_audioset(spec: DatasetSpec, tmp: Path, progress: bool) -> None:
    if os.path.isdir(spec.source):
        shutil.copytree(spec.source, tmp, dirs_exist_ok=True)
        return
    for name in AUDIOSET_CSVS:
        fetch(f"{spec.source.rstrip('/')}/{name}", tmp / name, progress)


def _hf_repo(source: str) -> str:
    return source.removeprefix("hf://").removeprefix("datasets/").split("#")[0].strip("/")


def _stage_hf(spec: DatasetSpec, tmp: Path, progress: bool) -> None:
    if not spec.source.startswith("hf://"):
        shutil.copytree(spec.source, tmp, dirs_exist_ok=True)
        return
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    repo = _hf_repo(spec.source)
    try:
        snapshot_download(
            repo,
            repo_type="dataset",
            local_dir=tmp,
            allow_patterns=["*.parquet", "*.json", "README.md"],
        )
    except (HfHubHTTPError, LocalEntryNotFoundError, OSError) as err:
        raise DatasetError(
            f"cannot download the Hugging Face dataset {repo}: {err}. Without network access, "
            "copy its parquet files to a folder or s3:// prefix and set `source:` to it."
        ) from err


def _stage_birdset(spec: DatasetSpec, tmp: Path, progress: bool) -> None:
    if not spec.source.startswith("hf://"):
        shutil.copytree(spec.source, tmp, dirs_exist_ok=True)
        return
    cfg = spec.hf_config or spec.name.upper()
    repo = _hf_repo(spec.source)
    n_train, n_test = BIRDSET_SHARDS[cfg]
    names = [f"{cfg}/{cfg}_metadata_train.parquet", f"{cfg}/{cfg}_metadata_test_5s.parquet"]
    names += [f"{cfg}/{cfg}_train_shard_{i:04d}.tar.gz" for i in range(1, n_train + 1)]
    names += [f"{cfg}/{cfg}_test5s_shard_{i:04d}.tar.gz" for i in range(1, n_test + 1)]
    from tqdm.auto import tqdm

    for name in tqdm(names, desc=f"BirdSet {cfg}", disable=not progress):
        path = hf_download(repo, name, tmp / ".download", revision="data")
        if name.endswith(".tar.gz"):
            extract(path, tmp / "audio", flat=True)
            path.unlink()
        else:
            shutil.move(path, tmp / Path(name).name)
    classes_py = hf_download(repo, "classes.py", tmp / ".download")
    write_birdset_classes(classes_py, cfg, tmp / "classes.txt")
    shutil.rmtree(tmp / ".download", ignore_errors=True)


def write_birdset_classes(classes_py: Path, cfg: str, out: Path) -> tuple[str, ...]:
    """Read the config's eBird code list from BirdSet's ``classes.py`` (no code executed)."""
    var = BIRDSET_CLASS_LISTS[cfg]
    tree = ast.parse(classes_py.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == var for t in node.targets
        ):
            names = tuple(ast.literal_eval(node.value))
            out.write_text("".join(f"{n}\n" for n in names))
            return names
    raise DatasetError(f"{classes_py}: no {var} list; has BirdSet's classes.py changed?")


STAGERS = {
    "esc50": _stage_archive,
    "sc2": _stage_archive,
    "fsd50k": _stage_fsd50k,
    "audioset": _stage_audioset,
    "hf": _stage_hf,
    "birdset": _stage_birdset,
    "local": _stage_archive,
}
