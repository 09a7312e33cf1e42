"""Every reader on a miniature in its source's real layout and column schema."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import soundfile as sf

from orchestrator.datasets import DatasetError, get_dataset, open_split
from orchestrator.datasets.catalog import ESC50_CLASSES, URBAN_CLASSES

RNG = np.random.default_rng(0)


def wav_bytes(seconds: float = 0.2, rate: int = 16000, fmt: str = "WAV") -> bytes:
    buf = io.BytesIO()
    sf.write(buf, RNG.uniform(-0.1, 0.1, int(seconds * rate)), rate, format=fmt)
    return buf.getvalue()


def write_hf_parquet(path: Path, rows: list[dict], features: dict) -> None:
    """Parquet as ``datasets`` writes it: audio structs, features in the schema metadata."""
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pylist(rows)
    meta = {b"huggingface": json.dumps({"info": {"features": features}}).encode()}
    pq.write_table(table.replace_schema_metadata(meta), path, row_group_size=2)


AUDIO_FEATURE = {"sampling_rate": 16000, "_type": "Audio"}


# -- ESC-50 ------------------------------------------------------------------------------------
def esc50_archive(root: Path) -> Path:
    base = root / "ESC-50-master"
    (base / "audio").mkdir(parents=True)
    (base / "meta").mkdir()
    with open(base / "meta" / "esc50.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["filename", "fold", "target", "category", "esc10", "src_file", "take"])
        for i in range(10):
            fold, target = i % 5 + 1, (7 * i) % 50
            name = f"{fold}-{100 + i}-A-{target}.wav"
            (base / "audio" / name).write_bytes(wav_bytes(rate=44100))
            w.writerow([name, fold, target, ESC50_CLASSES[target], "False", 100 + i, "A"])
    return root


def test_esc50_official_archive_folds(tmp_path: Path) -> None:
    spec = get_dataset("esc50", source=str(esc50_archive(tmp_path / "esc")))
    sizes = {s: len(open_split(spec, s, tmp_path)) for s in ("train", "valid", "test")}
    assert sizes == {"train": 7, "valid": 1, "test": 2}  # folds 1-4 train, valid carved from them
    ex = open_split(spec, "test", tmp_path)[0]
    assert ex.id.startswith("5-") and ex.sample_rate == 44100
    assert ex.labels == (int(ex.id.rsplit("-", 1)[1].split(".")[0]),)


def test_esc50_hf_parquet_schema(tmp_path: Path) -> None:
    rows = []
    for i in range(10):
        fold, target = i % 5 + 1, i
        name = f"{fold}-{200 + i}-A-{target}.wav"
        rows.append(
            {
                "filename": name,
                "fold": fold,
                "target": target,
                "category": ESC50_CLASSES[target],
                "esc10": False,
                "src_file": 200 + i,
                "take": "A",
                "audio": {"bytes": wav_bytes(rate=44100), "path": name},
            }
        )
    features = {
        "filename": {"dtype": "string", "_type": "Value"},
        "fold": {"dtype": "int64", "_type": "Value"},
        "target": {"dtype": "int64", "_type": "Value"},
        "category": {"dtype": "string", "_type": "Value"},
        "audio": AUDIO_FEATURE,
    }
    write_hf_parquet(tmp_path / "esc" / "data" / "train-00000-of-00001.parquet", rows, features)
    spec = get_dataset("esc50", source=str(tmp_path / "esc"))
    test = open_split(spec, "test", tmp_path)
    assert len(test) == 2 and {e.labels[0] for e in test} == {4, 9}
    assert test[0].waveform.shape == (int(0.2 * 44100),)


# -- Hugging Face multi-label (desed / urban / spass) ------------------------------------------
def test_hf_multilabel_with_classlabel_names(tmp_path: Path) -> None:
    names = [f"source_{i}" for i in range(28)]
    features = {
        "audio": AUDIO_FEATURE,
        "filepath": {"dtype": "string", "_type": "Value"},
        "labels": {"feature": {"names": names, "_type": "ClassLabel"}, "_type": "Sequence"},
    }
    for split, n in (("train", 5), ("validation", 2), ("test", 3)):
        rows = [
            {
                "audio": {"bytes": wav_bytes(seconds=1.0), "path": None},
                "filepath": f"{split}/{k}.wav",
                "labels": [k % 28, (k + 3) % 28][: k % 3],
            }
            for k in range(n)
        ]
        write_hf_parquet(
            tmp_path / "spass" / "data" / f"{split}-00000-of-00001.parquet", rows, features
        )
    spec = get_dataset("spass", source=str(tmp_path / "spass"))
    train, valid = open_split(spec, "train", tmp_path), open_split(spec, "valid", tmp_path)
    assert (len(train), len(valid), len(open_split(spec, "test", tmp_path))) == (5, 2, 3)
    assert train.classes == tuple(names)
    assert [train[k].labels for k in range(3)] == [(), (1,), (2, 5)]
    assert train[4].waveform.shape == (16000,) and train[4].id == "4.wav"


def test_hf_wrong_class_count_is_refused(tmp_path: Path) -> None:
    features = {
        "audio": AUDIO_FEATURE,
        "labels": {"feature": {"names": ["a", "b"], "_type": "ClassLabel"}, "_type": "Sequence"},
    }
    rows = [{"audio": {"bytes": wav_bytes(), "path": None}, "labels": [0]}]
    write_hf_parquet(tmp_path / "d" / "train" / "0000.parquet", rows, features)
    with pytest.raises(DatasetError, match="2 classes, 'desed' expects 10"):
        open_split(get_dataset("desed", source=str(tmp_path / "d")), "train", tmp_path)


# -- BirdSet -----------------------------------------------------------------------------------
CODES = tuple(f"bird{i:02d}" for i in range(21))  # HSN has 21 eBird codes
BIRDSET_COLUMNS = {
    "low_freq": 0,
    "high_freq": 16000,
    "call_type": "song",
    "sex": None,
    "lat": 37.0,
    "long": -119.0,
    "microphone": "focal",
    "license": "CC",
    "source": "xenocanto",
    "local_time": "06:00",
    "event_cluster": [0],
    "peaks": [1.0],
    "quality": "A",
    "recordist": "x",
    "ebird_code_secondary": [],
}


def birdset_rows(per_class: int = 12) -> tuple[list[dict], list[dict]]:
    train = []
    for c in range(3):
        for k in range(per_class):
            train.append(
                {
                    **BIRDSET_COLUMNS,
                    "filepath": f"/data/XC{c}{k:03d}.ogg",
                    "start_time": None,
                    "end_time": None,
                    "ebird_code": c,
                    "ebird_code_multilabel": [c],
                    "length": 8,
                    "detected_events": [[3.0, 4.0]] if k % 2 else [],
                }
            )
    test = [
        {
            **BIRDSET_COLUMNS,
            "filepath": f"/data/HSN_001_20150708_061805_{5 * k:03d}_{5 * k + 5:03d}.ogg",
            "start_time": 5.0 * k,
            "end_time": 5.0 * k + 5,
            "ebird_code": None,
            "ebird_code_multilabel": [k % 21, (k + 1) % 21][: k % 3],
            "length": 5,
            "detected_events": None,
        }
        for k in range(4)
    ]
    return train, test


def test_birdset_raw_layout_64_shot_protocol(tmp_path: Path) -> None:
    root = tmp_path / "hsn"
    (root / "audio").mkdir(parents=True)
    train, test = birdset_rows()
    for row in train + test:
        name = row["filepath"].rsplit("/", 1)[-1]
        sf.write(root / "audio" / name, RNG.uniform(-0.1, 0.1, 8 * 3200), 3200, format="OGG")
    pq.write_table(pa.Table.from_pylist(train), root / "HSN_metadata_train.parquet")
    pq.write_table(pa.Table.from_pylist(test), root / "HSN_metadata_test_5s.parquet")
    (root / "classes.txt").write_text("".join(f"{c}\n" for c in CODES))
    spec = get_dataset("hsn", source=str(root), shots=8, valid_shots=2)
    tr, va, te = (open_split(spec, s, tmp_path) for s in ("train", "valid", "test"))
    assert (len(tr), len(va), len(te)) == (24, 6, 4)
    assert not {r.id for r in tr.records} & {r.id for r in va.records}
    assert te.classes == CODES and [te[k].labels for k in range(3)] == [(), (1,), (2, 3)]
    rec = next(r for r in tr.records if r.id == "XC0001.ogg")
    assert (rec.start, rec.end) == (1.0, 6.0)  # 5 s centred on the first detected event
    ex = tr[0]
    assert ex.sample_rate == 3200 and ex.waveform.shape[0] <= 5 * 3200
    # the selection is seeded: the same seed, the same clips
    again = open_split(
        get_dataset("hsn", source=str(root), shots=8, valid_shots=2), "train", tmp_path
    )
    assert again.ids == tr.ids


def test_birdset_hf_parquet_layout_and_mixup_variants(tmp_path: Path) -> None:
    train, test = birdset_rows(per_class=3)
    label = {"names": list(CODES), "_type": "ClassLabel"}
    features = {
        "audio": {"sampling_rate": 32000, "_type": "Audio"},
        "ebird_code": label,
        "ebird_code_multilabel": {"feature": label, "_type": "Sequence"},
    }
    for split, rows in (("train", train), ("test_5s", test)):
        rows = [
            {**r, "audio": {"bytes": wav_bytes(seconds=5.0, rate=8000), "path": None}} for r in rows
        ]
        write_hf_parquet(tmp_path / "bs" / "HSN" / split / "0000.parquet", rows, features)
    spec = get_dataset("hsn", source=str(tmp_path / "bs"))
    tr = open_split(spec, "train", tmp_path)
    # 3 recordings per class: one of each goes to validation, so no split is empty
    assert len(tr) == 6 and len(open_split(spec, "valid", tmp_path)) == 3
    assert len(open_split(spec, "test", tmp_path)) == 4
    mixes = [open_split(spec, f"train_mix{k}", tmp_path) for k in range(5)]
    mixed = [m[i] for m in mixes for i in range(len(m))]
    n_mixed = sum("+" in e.id for e in mixed)
    assert 20 <= n_mixed <= 30  # p = 0.9 of 5 variants x 6 training clips
    plain = {e.id: e for e in (tr[i] for i in range(len(tr)))}
    for e in mixed:
        base = plain[e.id.split("+")[0]]
        if "+" in e.id:
            other = plain[e.id.split("+")[1]]
            assert set(e.labels) == set(base.labels) | set(other.labels)
            assert not np.array_equal(e.waveform, base.waveform)
        else:
            np.testing.assert_array_equal(e.waveform, base.waveform)
    again = open_split(spec, "train_mix3", tmp_path)
    np.testing.assert_array_equal(again[2].waveform, mixes[3][2].waveform)
    ids = [[m[i].id for i in range(len(tr))] for m in mixes]
    assert len({tuple(v) for v in ids}) == 5  # five different variants


# -- Speech Commands v2 ------------------------------------------------------------------------
def test_sc2_twelve_class_mapping(tmp_path: Path) -> None:
    root = tmp_path / "sc"
    words = {"yes": 6, "no": 6, "cat": 12, "marvin": 6}
    valid, testing = [], []
    for word, n in words.items():
        (root / word).mkdir(parents=True)
        for k in range(n):
            name = f"{word}/spk{k % 3}_nohash_{k}.wav"
            (root / name).write_bytes(wav_bytes(seconds=1.0))
            (valid if k % 3 == 1 else testing if k % 3 == 2 else []).append(name)
    (root / "_background_noise_").mkdir()
    sf.write(root / "_background_noise_" / "white_noise.wav", RNG.uniform(-0.1, 0.1, 48000), 16000)
    (root / "validation_list.txt").write_text("\n".join(valid) + "\n")
    (root / "testing_list.txt").write_text("\n".join(testing) + "\n")
    spec = get_dataset("sc2", source=str(root))
    train = open_split(spec, "train", tmp_path)
    cls = train.classes
    counts = dict(zip(cls, train.label_counts(), strict=True))
    assert cls[-2:] == ("_unknown_", "_silence_") and len(cls) == 12
    assert counts["yes"] == 2 and counts["no"] == 2
    # train: every other word (cat 4 + marvin 2), one silence window per second of noise (3 s)
    assert counts["_unknown_"] == 6 and counts["_silence_"] == 3
    valid = open_split(spec, "valid", tmp_path)
    vcounts = dict(zip(cls, valid.label_counts(), strict=True))
    assert vcounts["_unknown_"] == 1 and vcounts["_silence_"] == 1  # mean keyword count (4 // 10)
    sil = next(train[i] for i in range(len(train)) if train[i].labels == (11,))
    assert sil.waveform.shape == (16000,)
    test = open_split(spec, "test", tmp_path)
    assert {r.id for r in test.records if r.labels == (0,)} == {
        "yes/spk2_nohash_2.wav",
        "yes/spk2_nohash_5.wav",
    }


# -- FSD50K ------------------------------------------------------------------------------------
def test_fsd50k_ground_truth_layout(tmp_path: Path) -> None:
    root = tmp_path / "fsd"
    gt = root / "FSD50K.ground_truth"
    gt.mkdir(parents=True)
    vocab = [(i, f"Label_{i}", f"/m/{i:04x}") for i in range(200)]
    with open(gt / "vocabulary.csv", "w", newline="") as f:
        csv.writer(f).writerows(vocab)
    for table, audio, n in (
        ("dev.csv", "FSD50K.dev_audio", 4),
        ("eval.csv", "FSD50K.eval_audio", 2),
    ):
        (root / audio).mkdir()
        with open(gt / table, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["fname", "labels", "mids"] + (["split"] if table == "dev.csv" else []))
            for k in range(n):
                fname = 1000 * n + k
                (root / audio / f"{fname}.wav").write_bytes(wav_bytes(rate=44100))
                ids = [k, k + 100]
                w.writerow(
                    [fname, ",".join(vocab[i][1] for i in ids), ",".join(vocab[i][2] for i in ids)]
                    + (["val" if k == 3 else "train"] if table == "dev.csv" else [])
                )
    spec = get_dataset("fsd50k", source=str(root))
    tr, va, te = (open_split(spec, s, tmp_path) for s in ("train", "valid", "test"))
    assert (len(tr), len(va), len(te)) == (3, 1, 2)
    assert len(tr.classes) == 200 and tr[1].labels == (1, 101) and va[0].id == "4003"


# -- AudioSet ----------------------------------------------------------------------------------
def test_audioset_segments_csv_and_audio_naming(tmp_path: Path) -> None:
    root = tmp_path / "as"
    (root / "audio").mkdir(parents=True)
    with open(root / "class_labels_indices.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["index", "mid", "display_name"])
        w.writerows(
            [(i, f"/m/{i:05x}", f"Sound {i}, type" if i % 2 else f"Sound {i}") for i in range(527)]
        )
    header = (
        "# Segments csv created Sun Mar  5 10:54:31 2017\n"
        "# num_ytids=3, num_segs=3, num_unique_labels=3, num_positive_labels=4\n"
        "# YTID, start_seconds, end_seconds, positive_labels\n"
    )
    for native, ids in (
        ("balanced_train_segments", ["--aE2O5G5WE", "-0SdAVK79lg", "abc"]),
        ("eval_segments", ["zz9", "missing1"]),
    ):
        lines = [
            f'{y}, {30 * k}.000, {30 * k + 10}.000, "/m/{k:05x},/m/{k + 1:05x}"'
            for k, y in enumerate(ids)
        ]
        (root / f"{native}.csv").write_text(header + "\n".join(lines) + "\n")
    (root / "audio" / "Y--aE2O5G5WE.wav").write_bytes(wav_bytes())
    (root / "audio" / "-0SdAVK79lg_30.wav").write_bytes(wav_bytes())
    (root / "audio" / "abc.flac").write_bytes(wav_bytes(fmt="FLAC"))
    (root / "audio" / "zz9.wav").write_bytes(wav_bytes())
    spec = get_dataset("as20k", source=str(root))
    train = open_split(spec, "train", tmp_path)
    valid = open_split(spec, "valid", tmp_path)
    assert len(train) + len(valid) == 3 and len(valid) == 1  # carved 10%, at least one
    assert len(open_split(spec, "test", tmp_path)) == 1  # "missing1" has no audio
    recs = {r.id: r for r in train.records + valid.records}
    assert recs["-0SdAVK79lg"].labels == (1, 2) and train.classes[1] == "Sound 1, type"


def test_hf_save_to_disk_arrow_layout(tmp_path: Path) -> None:
    """``datasets.save_to_disk``: <split>/data-*.arrow (IPC stream) + dataset_info.json."""
    names = list(URBAN_CLASSES)
    features = {
        "audio": AUDIO_FEATURE,
        "events": {"feature": {"names": names, "_type": "ClassLabel"}, "_type": "Sequence"},
    }
    for split, n in (("train", 4), ("validation", 1), ("test", 2)):
        d = tmp_path / "urban" / split
        d.mkdir(parents=True)
        table = pa.Table.from_pylist(
            [
                {"audio": {"bytes": wav_bytes(), "path": f"{k}.wav"}, "events": [k % 10]}
                for k in range(n)
            ]
        )
        with (
            pa.OSFile(str(d / "data-00000-of-00001.arrow"), "wb") as sink,
            pa.ipc.new_stream(sink, table.schema) as writer,
        ):
            writer.write_table(table)
        (d / "dataset_info.json").write_text(json.dumps({"features": features}))
    spec = get_dataset("urban", source=str(tmp_path / "urban"))
    train = open_split(spec, "train", tmp_path)
    assert (len(train), len(open_split(spec, "valid", tmp_path))) == (4, 1)
    assert [train[k].labels for k in range(4)] == [(0,), (1,), (2,), (3,)]
    assert train.classes == URBAN_CLASSES and train[3].waveform.shape == (3200,)


def test_hf_multi_hot_label_vectors_are_read_as_classes():
    """A 0/1 vector over the classes is a set of classes, not the class indices 0 and 1."""
    from orchestrator.datasets import get_dataset
    from orchestrator.datasets.api import DatasetError
    from orchestrator.datasets.hf import rows_to_records

    spec = get_dataset("desed")
    classes = spec.classes
    hot = [0] * len(classes)
    hot[2] = hot[8] = 1
    rows = [{"audio": None, "labels": hot}, {"audio": None, "labels": [float(v) for v in hot]}]
    records = rows_to_records(spec, "mem://x.parquet", rows, "audio", classes)
    assert [r.labels for r in records] == [(2, 8), (2, 8)]
    with pytest.raises(DatasetError, match="outside 0..9"):
        rows_to_records(
            spec, "mem://x.parquet", [{"audio": None, "labels": [12]}], "audio", classes
        )


def test_hub_shard_names_with_a_hash_suffix_name_their_split(tmp_path):
    from orchestrator.datasets.hf import available_splits

    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "train-00000-of-00001-7a15cd430fcb54f1.parquet").write_bytes(b"")
    (tmp_path / "data" / "test-00000-of-00001.parquet").write_bytes(b"")
    assert available_splits(str(tmp_path)) == ["test", "train"]


def _local_folder(root, splits):
    import numpy as np
    import soundfile as sf

    from orchestrator.datasets.local import write_metadata
    from orchestrator.datasets.synth import EVENT_CLASSES

    (root / "audio").mkdir(parents=True)
    rows = []
    for split, n in splits.items():
        for i in range(n):
            rel = f"audio/{split}-{i}.wav"
            sf.write(root / rel, np.zeros(1600, dtype=np.float32), 16000)
            rows.append({"id": f"{split}-{i}", "split": split, "path": rel, "labels": ["tone"]})
    write_metadata(str(root), rows, EVENT_CLASSES)


def test_a_local_validation_split_is_used_not_replaced_by_a_carved_one(tmp_path):
    _local_folder(tmp_path / "mine", {"train": 6, "validation": 3, "eval": 2})
    spec = get_dataset("synth_events", source=str(tmp_path / "mine"))
    assert [len(open_split(spec, s, str(tmp_path))) for s in ("train", "valid", "test")] == [
        6,
        3,
        2,
    ]


def test_an_unknown_local_split_is_refused(tmp_path):
    _local_folder(tmp_path / "mine", {"train": 2, "holdout": 1})
    spec = get_dataset("synth_events", source=str(tmp_path / "mine"))
    with pytest.raises(DatasetError, match=r"\['holdout'\]"):
        open_split(spec, "train", str(tmp_path))


def test_read_time_options_change_the_version_not_the_staged_folder():
    base = get_dataset("hsn")
    tuned = get_dataset("hsn", shots=16)
    assert tuned.version != base.version  # a different store key ...
    assert tuned.folder_name == base.folder_name == "hsn"  # ... the same staged copy
    assert get_dataset("hsn", seed=0).version == base.version  # a default is no change
    assert get_dataset("hsn", source="s3://bucket/hsn").folder_name != "hsn"
