import os
import pickle

import pytest
import torch
import torchvision

from alexbench.checkpoint import ModelMeta, SourceKind, load_model, save_checkpoint
from alexbench.errors import CheckpointError, InputError
from alexbench.model import build_alexnet, state_dict_sha256


def test_checkpoint_round_trip_keeps_weights_and_metadata(tmp_path):
    model = build_alexnet(num_classes=10, seed=1)
    meta = ModelMeta(
        num_classes=10, image_size=64, class_names=[f"c{i}" for i in range(10)],
        mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), provenance={"epochs": 3},
    )  # fmt: skip
    path = save_checkpoint(tmp_path / "ck.pt", model, meta)
    loaded = load_model(checkpoint=path)
    assert state_dict_sha256(loaded.model) == state_dict_sha256(model)
    assert loaded.meta.class_names == meta.class_names
    assert loaded.meta.image_size == 64 and loaded.meta.mean == (0.5, 0.5, 0.5)
    assert loaded.meta.provenance == {"epochs": 3}
    assert loaded.source.kind is SourceKind.CHECKPOINT and len(loaded.source.file_sha256) == 64
    assert not list(tmp_path.glob(".*tmp*"))  # atomic write left no temporary file


def test_plain_torchvision_state_dict_loads_with_weights(tmp_path):
    tv = torchvision.models.alexnet(weights=None, num_classes=7)
    torch.save(tv.state_dict(), tmp_path / "tv.pth")
    loaded = load_model(weights=tmp_path / "tv.pth")
    assert loaded.meta.num_classes == 7  # inferred from the last layer
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        assert torch.equal(loaded.model(x), tv.eval()(x))


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch /tmp/alexbench-pwned",))


def test_pickle_that_runs_code_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    if os.path.exists("/tmp/alexbench-pwned"):
        os.remove("/tmp/alexbench-pwned")
    with open(path, "wb") as f:
        pickle.dump({"state_dict": _Evil()}, f)
    torch.save({"x": 1}, tmp_path / "ok.pt")
    for kw in ("weights", "checkpoint"):
        with pytest.raises(CheckpointError, match="refused to load|not a PyTorch checkpoint"):
            load_model(**{kw: path})
    # The same object inside a real torch.save zip file is refused by weights_only too.
    torch.save({"state_dict": _Evil()}, tmp_path / "evil2.pt")
    with pytest.raises(CheckpointError, match="refused to load"):
        load_model(weights=tmp_path / "evil2.pt")
    assert not os.path.exists("/tmp/alexbench-pwned")


def test_wrong_shapes_corrupt_files_and_mismatches_give_one_line_errors(tmp_path):
    sd = build_alexnet(num_classes=10).state_dict()
    sd["features.0.weight"] = torch.zeros(32, 3, 11, 11)
    torch.save(sd, tmp_path / "shape.pth")
    with pytest.raises(CheckpointError, match=r"shape.pth: tensor 'features.0.weight' has shape"):
        load_model(weights=tmp_path / "shape.pth")

    (tmp_path / "junk.pth").write_bytes(b"\x00not a zip file at all" * 10)
    with pytest.raises(CheckpointError, match="junk.pth: not a PyTorch checkpoint"):
        load_model(weights=tmp_path / "junk.pth")

    good = build_alexnet(num_classes=10).state_dict()
    torch.save(good, tmp_path / "ten.pth")
    with pytest.raises(CheckpointError, match="10 classes"):
        load_model(weights=tmp_path / "ten.pth", num_classes=5)
    with pytest.raises(CheckpointError, match="not an alexbench checkpoint"):
        load_model(checkpoint=tmp_path / "ten.pth")
    with pytest.raises(CheckpointError, match="no such file"):
        load_model(weights=tmp_path / "missing.pth")
    with pytest.raises(InputError, match="minimum of 64"):
        load_model(image_size=32)
    for err in (CheckpointError, InputError):
        try:
            load_model(weights=tmp_path / "shape.pth")
        except err as e:
            assert "\n" not in str(e)
