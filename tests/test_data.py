import numpy as np
import pytest

from datagen.dataset import DatasetError, dense_modulation
from datagen.generate import GenerateConfig, generate
from datagen.render import RenderConfig
from datagen.features import FeatureConfig
from training.data import PresetDataset, collate


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("data") / "tiny.h5"
    config = GenerateConfig(tier=3, n_presets=12, notes=(60, 72), render=RenderConfig(render_length=0.5, note_length=0.25),
                            features=FeatureConfig(duration=0.5))
    generate(out, config, workers=1, show_progress=False)
    return out


def test_splits_partition_the_rows(tiny):
    sizes = {s: len(PresetDataset(tiny, split=s)) for s in ("train", "val", "test")
             if _has(tiny, s)}
    assert sum(sizes.values()) == len(PresetDataset(tiny, split=None)) == 24


def _has(path, split):
    try:
        PresetDataset(path, split=split)
        return True
    except DatasetError:
        return False


def test_collate_matches_the_reference_dense_modulation(tiny, registry):
    ds = PresetDataset(tiny, split=None)
    items = [ds[i] for i in range(4)]
    batch = collate(items, n_sources=32, n_destinations=428)
    assert batch["mel"].shape == (4, 1, 128, 44) and str(batch["mel"].dtype) == "torch.float32"
    assert batch["continuous"].shape == (4, 293) and batch["categorical"].shape == (4, 159)
    assert batch["wavetable"].min() >= 0  # -1 (init table) became class 0
    ref = dense_modulation(np.stack([x["modulation"] for x in items]), 32, 428)
    np.testing.assert_allclose(batch["modulation"].numpy(), ref, atol=1e-6)
    assert batch["modulation"][:, 0].sum() == sum((x["modulation"][:, 0] >= 0).sum() for x in items)


def test_dataset_pickles_without_open_files(tiny):
    import pickle

    ds = PresetDataset(tiny, split=None)
    ds[0]
    clone = pickle.loads(pickle.dumps(ds))
    assert clone._files is None and clone[1]["midi_note"] == ds[1]["midi_note"]


def test_refuses_other_registry_and_mixed_tiers(tiny, tmp_path):
    import shutil

    import h5py

    other = tmp_path / "other.h5"
    shutil.copy(tiny, other)
    with h5py.File(other, "a") as f:
        f.attrs["registry_fingerprint"] = "0000000000000000"
    with pytest.raises(DatasetError, match="made with registry 0000000000000000"):
        PresetDataset(other)
    tier2 = tmp_path / "tier2.h5"
    shutil.copy(tiny, tier2)
    with h5py.File(tier2, "a") as f:
        f.attrs["tier"] = 2
    with pytest.raises(DatasetError, match="disagree on tier"):
        PresetDataset([tiny, tier2], split=None)
    with pytest.raises(DatasetError, match="no such data set"):
        PresetDataset(tmp_path / "missing.h5")
    with pytest.raises(DatasetError, match="split must be one of"):
        PresetDataset(tiny, split="dev")


def test_batched_reads_equal_row_reads(tiny):
    """What DataLoader fetches through __getitems__ (one read per file and field) is each row's __getitem__, in
    the asked order, across two files and with a row asked twice."""
    ds = PresetDataset([tiny, tiny], split=None)
    order = [30, 3, 0, 47, 3, 12]
    for a, b in zip(ds.__getitems__(order), [ds[i] for i in order]):
        assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
