"""Registry, specs, the generated defaults and the local-folder reader."""

from __future__ import annotations

import multiprocessing as mp
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from orchestrator.datasets import (
    DATASETS,
    DatasetError,
    get_dataset,
    open_split,
)
from orchestrator.datasets.local import write_metadata
from orchestrator.datasets.splits import Record, carve
from probes.registry import RegistryError

PAPER = {  # shared/PAPER.md, "The 14 datasets": key -> (task, classes)
    "as20k": ("multilabel", 527), "fsd50k": ("multilabel", 200), "desed": ("multilabel", 10),
    "spass": ("multilabel", 28), "urban": ("multilabel", 10), "hsn": ("multilabel", 21),
    "pow": ("multilabel", 48), "per": ("multilabel", 132), "nes": ("multilabel", 89),
    "sne": ("multilabel", 56), "uhh": ("multilabel", 25), "nbp": ("multilabel", 51),
    "esc50": ("multiclass", 50), "sc2": ("multiclass", 12),
}  # fmt: skip
TINY = {"train_clips": 3, "valid_clips": 2, "test_clips": 2, "clip_seconds": 1.0}


def test_all_fourteen_paper_datasets_registered_with_paper_metadata() -> None:
    assert set(PAPER) | {"synth_events", "synth_control"} == set(DATASETS.names())
    for name, (task, n) in PAPER.items():
        spec = DATASETS.get(name)
        assert (spec.task, spec.num_classes) == (task, n), name
        assert spec.metric == ("map" if task == "multilabel" else "accuracy")


@pytest.mark.parametrize("name", DATASETS.names())
def test_every_spec_is_complete(name: str) -> None:
    spec = DATASETS.get(name)
    assert {"train", "valid", "test"} <= set(spec.splits)
    assert spec.clip_seconds > 0 and spec.sample_rate >= 8000 and spec.version and spec.source
    assert spec.classes or spec.classes_url, "a vocabulary or where to read it"
    assert spec.valid_carving


def test_birdset_specs_use_test_5s_and_hf_configs() -> None:
    for name in ("hsn", "pow", "per", "nes", "sne", "uhh", "nbp"):
        spec = DATASETS.get(name)
        assert spec.hf_config == name.upper() and spec.native_split("test") == "test_5s"
        assert spec.source == "hf://datasets/DBD-research-group/BirdSet"
        assert len(spec.extra_splits) == 5 and spec.sample_rate == 32000


def test_unknown_dataset_gets_did_you_mean() -> None:
    with pytest.raises(RegistryError, match="Did you mean 'esc50'"):
        get_dataset("esc5O")


def test_unknown_option_is_named_with_valid_ones() -> None:
    with pytest.raises(DatasetError, match="train_clipz.*train_clips"):
        get_dataset("synth_events", train_clipz=3)


def test_options_change_version_and_folder_but_defaults_do_not() -> None:
    base = get_dataset("synth_events")
    assert get_dataset("synth_events", train_clips=240) == base
    small = get_dataset("synth_events", **TINY)
    assert small.version != base.version and small.folder_name != base.folder_name
    assert (
        small.clip_seconds == 1.0 and small.version == get_dataset("synth_events", **TINY).version
    )


def test_synth_events_is_deterministic_and_multilabel(tmp_path: Path) -> None:
    spec = get_dataset("synth_events", **{**TINY, "train_clips": 6})
    a = open_split(spec, "train", tmp_path / "a")
    b = open_split(spec, "train", tmp_path / "b")
    assert len(a) == 6 and a.classes == b.classes and len(a.classes) == 10
    for i in range(len(a)):
        assert a[i].id == b[i].id and a[i].labels == b[i].labels
        np.testing.assert_array_equal(a[i].waveform, b[i].waveform)
    ex = a[0]
    assert ex.sample_rate == 16000 and ex.waveform.dtype == np.float32
    assert ex.waveform.shape == (16000,)
    # more clips per split never changes the existing ones
    more = open_split(
        get_dataset("synth_events", **{**TINY, "train_clips": 8}), "train", tmp_path / "c"
    )
    np.testing.assert_array_equal(more[5].waveform, a[5].waveform)
    counts = [len(open_split(spec, s, tmp_path / "a")) for s in ("train", "valid", "test")]
    assert counts == [6, 2, 2]


def test_synth_events_has_empty_and_multi_event_clips(tmp_path: Path) -> None:
    from orchestrator.datasets.synth import DEFAULTS, make_clip

    n_labels = [
        len(make_clip(0, "train", i, True, {**DEFAULTS, "clip_seconds": 1.0})[1]) for i in range(40)
    ]
    assert 0 in n_labels and max(n_labels) >= 2
    control = [
        make_clip(0, "train", i, False, {**DEFAULTS, "clip_seconds": 1.0})[1] for i in range(40)
    ]
    assert all(len(c) == 1 for c in control) and len({c[0] for c in control}) >= 8


def test_synth_control_one_label_per_clip(tmp_path: Path) -> None:
    split = open_split(get_dataset("synth_control", **TINY), "test", tmp_path)
    assert split.spec.task == "multiclass"
    assert all(len(split[i].labels) == 1 for i in range(len(split)))


def _generate(root: str) -> int:
    return len(open_split(get_dataset("synth_events", **TINY), "train", root))


def test_concurrent_first_use_generates_once(tmp_path: Path) -> None:
    ctx = mp.get_context("spawn")
    with ctx.Pool(2) as pool:
        assert pool.map(_generate, [str(tmp_path)] * 2) == [3, 3]
    folders = [p.name for p in tmp_path.iterdir() if not p.name.startswith(".")]
    assert len(folders) == 1 and not any(".tmp-" in p.name for p in tmp_path.iterdir())


def _user_folder(root: Path, with_valid: bool = True) -> Path:
    rng = np.random.default_rng(0)
    (root / "wav").mkdir(parents=True)
    rows = []
    for i in range(10):
        sf.write(root / "wav" / f"c{i}.wav", rng.uniform(-0.1, 0.1, 8000), 8000)
        split = "test" if i < 2 else ("valid" if with_valid and i < 4 else "train")
        rows.append(
            {
                "id": f"c{i}",
                "split": split,
                "path": f"wav/c{i}.wav",
                "labels": ["Dog", "Cat"] if i % 2 else ["Speech"],
                "start": "0.25",
                "end": "0.75",
                "group": f"rec{i // 2}",
            }
        )
    write_metadata(str(root), rows, ())
    (root / "classes.txt").unlink()
    return root


def test_local_folder_reader_reads_windows_labels_and_splits(tmp_path: Path) -> None:
    spec = get_dataset("desed", source=str(_user_folder(tmp_path / "desed")))
    test = open_split(spec, "test", tmp_path / "unused")
    assert len(test) == 2
    ex = test[1]
    assert ex.sample_rate == 8000 and ex.waveform.shape == (4000,)  # the 0.25-0.75 s window
    assert [spec.classes[c] for c in ex.labels] == ["Cat", "Dog"]
    assert len(open_split(spec, "valid", tmp_path)) == 2


def test_missing_valid_is_carved_seeded_and_by_group(tmp_path: Path) -> None:
    spec = get_dataset("desed", source=str(_user_folder(tmp_path / "d", with_valid=False)))
    train = open_split(spec, "train", tmp_path)
    valid = open_split(spec, "valid", tmp_path)
    assert len(train) + len(valid) == 8 and len(valid) >= 1
    groups = lambda s: {r.group for r in s.records}
    assert not groups(train) & groups(valid)
    assert valid.ids == open_split(spec, "valid", tmp_path).ids


def test_carve_depends_on_ids_not_order() -> None:
    recs = [Record(id=f"r{i}", labels=(), load=lambda: b"") for i in range(50)]
    a = carve(recs, 0.2, seed=1)[1]
    b = carve(recs[::-1], 0.2, seed=1)[1]
    assert {r.id for r in a} == {r.id for r in b} and len(a) == 10
    assert {r.id for r in carve(recs, 0.2, seed=2)[1]} != {r.id for r in a}


def test_unknown_label_in_metadata_names_it(tmp_path: Path) -> None:
    root = _user_folder(tmp_path / "bad")
    text = (root / "metadata.csv").read_text().replace("Speech", "Speach", 1)
    (root / "metadata.csv").write_text(text)
    with pytest.raises(DatasetError, match="'Speach'. Did you mean 'Speech'"):
        open_split(get_dataset("desed", source=str(root)), "train", tmp_path)


def test_unknown_split_and_unstaged_dataset_errors(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="Did you mean 'valid'"):
        open_split(get_dataset("synth_events", **TINY), "validation", tmp_path)
    with pytest.raises(DatasetError, match="orchestrator.data esc50 --prepare"):
        open_split("esc50", "train", tmp_path)


def test_max_clips_caps_every_split(tmp_path: Path) -> None:
    spec = get_dataset("desed", source=str(_user_folder(tmp_path / "d")), max_clips=3)
    assert len(open_split(spec, "train", tmp_path)) == 3


def test_sample_rate_and_clip_length_are_options(tmp_path: Path) -> None:
    spec = get_dataset("synth_events", **{**TINY, "sample_rate": 8000, "clip_seconds": 0.5})
    ex = open_split(spec, "valid", tmp_path)[0]
    assert spec.sample_rate == 8000 and spec.clip_seconds == 0.5
    assert ex.sample_rate == 8000 and ex.waveform.shape == (4000,)
