"""The registry of benchmark datasets: the two generated defaults and the paper's fourteen.

Metadata follows ``shared/PAPER.md`` ("The 14 datasets") and each source's documentation.
Vocabularies too large to list here (AudioSet 527, FSD50K 200) or only published with the data
(SPASS, the BirdSet eBird codes) are read at prepare time from ``classes_url`` and written to
the staged folder's ``classes.txt``; the spec keeps the count, which is all a probe needs.
"""

from __future__ import annotations

from orchestrator.datasets.spec import DatasetSpec
from orchestrator.datasets.synth import DEFAULTS as SYNTH_DEFAULTS
from orchestrator.datasets.synth import EVENT_CLASSES
from probes.registry import Registry

DATASETS: Registry[DatasetSpec] = Registry("dataset")


def _is_folder_alias(name: str) -> bool:
    from orchestrator.datasets.folder import ALIASES

    return name in ALIASES


def _folder_entry(name: str) -> DatasetSpec:
    from orchestrator.datasets.folder import ALIASES, folder_spec

    return folder_spec(ALIASES[name], name)


# user folders the driver resolved (``dataset=path/to/folder``, see folder.py)
DATASETS.accepts = _is_folder_alias
DATASETS.resolve = _folder_entry
SPLITS = ("train", "valid", "test")
VALID_FRACTION = 0.1
CARVE = "valid = a seeded 10% of train (by recording/group), see splits.carve"
BIRDSET_HF = "DBD-research-group/BirdSet"
BIRDSET_MIX = tuple(f"train_mix{i}" for i in range(5))
# Speech Commands v2, the 12-class task: ten keywords, all other words, and silence.
SC2_WORDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
ESC50_CLASSES = (
    "dog", "rooster", "pig", "cow", "frog", "cat", "hen", "insects", "sheep", "crow",
    "rain", "sea_waves", "crackling_fire", "crickets", "chirping_birds", "water_drops", "wind",
    "pouring_water", "toilet_flush", "thunderstorm", "crying_baby", "sneezing", "clapping",
    "breathing", "coughing", "footsteps", "laughing", "brushing_teeth", "snoring",
    "drinking_sipping", "door_wood_knock", "mouse_click", "keyboard_typing", "door_wood_creaks",
    "can_opening", "washing_machine", "vacuum_cleaner", "clock_alarm", "clock_tick",
    "glass_breaking", "helicopter", "chainsaw", "siren", "car_horn", "engine", "train",
    "church_bells", "airplane", "fireworks", "hand_saw",
)  # fmt: skip
DESED_CLASSES = (
    "Alarm_bell_ringing", "Blender", "Cat", "Dishes", "Dog", "Electric_shaver_toothbrush",
    "Frying", "Running_water", "Speech", "Vacuum_cleaner",
)  # fmt: skip
URBAN_CLASSES = (
    "air_conditioner", "car_horn", "children_playing", "dog_bark", "drilling",
    "engine_idling", "gun_shot", "jackhammer", "siren", "street_music",
)  # fmt: skip


def _register(spec: DatasetSpec) -> DatasetSpec:
    DATASETS.register(spec.name, spec)
    return spec


for _name, _version, _task, _metric, _options, _desc in (
    (
        "synth_events",
        "synth-1",
        "multilabel",
        "map",
        SYNTH_DEFAULTS,
        "Generated: 0-4 short localized events (10 kinds) per clip over pink noise.",
    ),
    (
        "synth_control",
        "synth-2",  # synth-1 had 0.15-0.6 s events: a random encoder left every probe at chance
        "multiclass",
        "accuracy",
        {**SYNTH_DEFAULTS, "max_events": 1, "min_event_seconds": 1.0, "max_event_seconds": 4.0},
        "Generated multi-class control: exactly one 1-4 s event per clip (a clip-level task, "
        "like ESC-50 in the paper, where mean pooling should do well).",
    ),
):
    _register(
        DatasetSpec(
            name=_name,
            task=_task,
            classes=EVENT_CLASSES,
            metric=_metric,
            clip_seconds=float(SYNTH_DEFAULTS["clip_seconds"]),
            sample_rate=int(SYNTH_DEFAULTS["sample_rate"]),
            splits=SPLITS,
            version=_version,
            source="generated",
            description=_desc,
            fmt="synth",
            valid_carving="generated",
            options=tuple(sorted(_options.items())),
            synthetic=True,
        )
    )
_register(
    DatasetSpec(
        name="as20k",
        task="multilabel",
        classes=(),
        num_classes=527,
        classes_url="http://storage.googleapis.com/us_audioset/youtube_corpus/v1/csv/class_labels_indices.csv",
        metric="map",
        clip_seconds=10.0,
        sample_rate=16000,
        splits=SPLITS,
        version="audioset-v1",
        source="http://storage.googleapis.com/us_audioset/youtube_corpus/v1/csv/",
        description=(
            "AudioSet balanced train (~20k, train) and eval (~20k, test) segments; the official "
            "CSVs list YouTube ids only, so the audio folder is user supplied (Y<id>.wav or "
            "<id>_<start>.wav files)."
        ),
        fmt="audioset",
        native_splits=(("train", "balanced_train_segments"), ("test", "eval_segments")),
        valid_carving=CARVE,
        license="CC BY 4.0 (labels); audio: YouTube terms",
        paper="Gemmeke et al., ICASSP 2017",
    )
)
_register(
    DatasetSpec(
        name="fsd50k",
        task="multilabel",
        classes=(),
        num_classes=200,
        classes_url="https://zenodo.org/records/4060432/files/FSD50K.ground_truth.zip",
        metric="map",
        clip_seconds=30.0,  # whole clips: labels are per clip; the encoder chunks 10.24 s windows
        sample_rate=44100,
        splits=SPLITS,
        version="fsd50k-1.0",
        source="https://zenodo.org/records/4060432",
        description=(
            "FSD50K dev (train/val, official) and eval; 0.3-30 s clips, padded to 30 s "
            "(3 encoder windows, 192 x 8 tokens, padding masked)."
        ),
        fmt="fsd50k",
        native_splits=(("valid", "val"), ("test", "eval")),
        license="CC BY 4.0 (per-clip CC licences)",
        paper="Fonseca et al., TASLP 2022",
    )
)
for _name, _hf, _classes, _n, _sr, _desc in (
    ("desed", "lrauch/desed", DESED_CLASSES, 10, 16000, "DESED domestic sound events"),
    ("spass", "lrauch/spass", (), 28, 44100, "SPASS urban soundscapes (28 sources)"),
    ("urban", "lrauch/urban-sed", URBAN_CLASSES, 10, 44100, "URBAN-SED synthetic soundscapes"),
):
    _register(
        DatasetSpec(
            name=_name,
            task="multilabel",
            classes=_classes,
            num_classes=_n,
            classes_url=None if _classes else f"hf://datasets/{_hf}",
            metric="map",
            clip_seconds=10.0,
            sample_rate=_sr,
            splits=SPLITS,
            version=f"hf-{_hf.split('/')[1]}-main",
            source=f"hf://datasets/{_hf}",
            description=f"{_desc}, multi-label 10 s clips (Hugging Face {_hf}).",
            fmt="hf",
            valid_carving=f"official if the source has one, else {CARVE}",
            options=(("label_column", None),),
        )
    )
for _name, _n, _site in (
    ("hsn", 21, "High Sierra Nevada"),
    ("pow", 48, "Powdermill Nature Reserve"),
    ("per", 132, "Amazon Basin (Peru)"),
    ("nes", 89, "Colombia Costa Rica (NES)"),
    ("sne", 56, "Sierra Nevada (SNE)"),
    ("uhh", 25, "Hawaiian Islands (UHH)"),
    ("nbp", 51, "NIPS4Bplus"),
):
    _register(
        DatasetSpec(
            name=_name,
            task="multilabel",
            classes=(),
            num_classes=_n,
            classes_url=f"hf://datasets/{BIRDSET_HF}#{_name.upper()}",
            metric="map",
            clip_seconds=5.0,
            sample_rate=32000,
            splits=SPLITS,
            version="birdset-hf-main",
            source=f"hf://datasets/{BIRDSET_HF}",
            description=(
                f"BirdSet {_name.upper()} ({_site}): 64-shot per-class training set from "
                "Xeno-canto focal recordings, multi-label test_5s soundscape segments."
            ),
            fmt="birdset",
            hf_config=_name.upper(),
            native_splits=(("train", "train"), ("test", "test_5s")),
            valid_carving="valid = up to 8 further focal recordings per class (seeded)",
            extra_splits=BIRDSET_MIX,
            options=(("shots", 64), ("valid_shots", 8), ("mixup_p", 0.9)),
            license="CC BY-NC 4.0",
            paper="Rauch et al., BirdSet, ICLR 2025",
        )
    )
_register(
    DatasetSpec(
        name="esc50",
        task="multiclass",
        classes=ESC50_CLASSES,
        metric="accuracy",
        clip_seconds=5.0,
        sample_rate=44100,
        splits=SPLITS,
        version="esc50-master-4folds",  # was esc50-master: folds 1-3 train, fold 4 valid
        source="https://github.com/karolpiczak/ESC-50/archive/master.zip",
        description=(
            "ESC-50 environmental sounds; folds 1-4 train (1,600 clips, the paper's), fold 5 "
            "test; valid carved from the training folds."
        ),
        fmt="esc50",
        valid_carving=CARVE,
        license="CC BY-NC 3.0",
        paper="Piczak, ACM MM 2015",
    )
)
_register(
    DatasetSpec(
        name="sc2",
        task="multiclass",
        classes=(*SC2_WORDS, "_unknown_", "_silence_"),
        metric="accuracy",
        clip_seconds=1.0,
        sample_rate=16000,
        splits=SPLITS,
        version="speech_commands_v0.02-full-train",  # was ..._v0.02: balanced ~37 k train
        source="http://download.tensorflow.org/data/speech_commands_v0.02.tar.gz",
        description=(
            "Speech Commands v2, 12 classes: 10 keywords, _unknown_ (the 25 other words), "
            "_silence_ (1 s windows of _background_noise_); official validation/testing lists. "
            "Train is every training clip (~84.8 k, the paper's size); valid/test are balanced."
        ),
        fmt="sc2",
        options=(("balanced_train", False),),
        license="CC BY 4.0",
        paper="Warden, arXiv 1804.03209",
    )
)
