import pytest
import torch

from training.checkpoint import FORMAT_VERSION, CheckpointError, load, save


def test_round_trip_and_refusals(tmp_path, registry):
    path = tmp_path / "c.pt"
    save(path, {"registry_fingerprint": registry.fingerprint, "model": {"w": torch.ones(2)}, "config": {"a": 1}})
    ckpt = load(path)
    assert ckpt["format_version"] == FORMAT_VERSION and torch.equal(ckpt["model"]["w"], torch.ones(2))
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]  # no temp file left

    save(path, {"registry_fingerprint": "0000000000000000"})
    with pytest.raises(CheckpointError, match="trained for registry 0000000000000000"):
        load(path)
    torch.save({"format_version": 99}, path)
    with pytest.raises(CheckpointError, match="checkpoint format 99, this code reads format 1"):
        load(path)
    path.write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="c.pt: not a checkpoint \\(not a PyTorch file\\)"):
        load(path)
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load(tmp_path / "missing.pt")


def test_code_in_a_checkpoint_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    path = tmp_path / "evil.pt"
    torch.save({"format_version": FORMAT_VERSION, "x": Evil()}, path)
    with pytest.raises(CheckpointError, match="refused, it holds Python objects"):
        load(path)
