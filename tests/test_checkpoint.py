import os
import pickle
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
import torchvision

from alexbench.checkpoint import (
    CHECKPOINT_VERSION,
    ModelMeta,
    SourceKind,
    load_model,
    save_checkpoint,
    validate_state_dict,
)
from alexbench.errors import CheckpointError, InputError
from alexbench.model import build_alexnet, expected_shapes, state_dict_sha256


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


# -- hand-edited checkpoints and odd state dicts ------------------------------------------------
# Every AlexNet tensor as a stride-0 view of one zero: the right shapes in a file of a few KB,
# so that each case writes and loads quickly.
TWO = expected_shapes(2)


def _light_sd(**replace: torch.Tensor) -> dict[str, torch.Tensor]:
    sd = {k: torch.zeros(()).expand(shape) for k, shape in TWO.items()}
    sd.update(replace)
    return sd


@pytest.fixture(scope="module")
def ckpt_payload(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """What save_checkpoint writes for a 2-class, 64 px model, read back the way a user
    editing it would (the weights swapped for the light ones)."""
    path = tmp_path_factory.mktemp("ck") / "base.pt"
    meta = ModelMeta(num_classes=2, image_size=64, class_names=["cat", "dog"])
    save_checkpoint(path, build_alexnet(num_classes=2, seed=0), meta)
    payload = torch.load(path, weights_only=True)
    payload["state_dict"] = _light_sd()
    return payload


def _edited(tmp: Path, payload: dict[str, Any], name: str = "edited.pt", **edits: Any) -> Path:
    """Save `payload` with top-level `edits` (a key set to ... is removed); `meta__x=v` sets
    meta['x'] (... removes it)."""
    doc = dict(payload, meta=dict(payload["meta"]))
    for key, value in edits.items():
        where, key = (doc["meta"], key[6:]) if key.startswith("meta__") else (doc, key)
        if value is ...:
            where.pop(key, None)
        else:
            where[key] = value
    torch.save(doc, tmp / name)
    return tmp / name


def _edit_id(edits: dict[str, Any]) -> str:
    return ",".join(
        f"{k.removeprefix('meta__')}={'del' if v is ... else repr(v)}"[:24]
        for k, v in edits.items()
    )


def _one_line_error(err: type[Exception], fragment: str, **kw: Any) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing else may reach the terminal
        with pytest.raises(err, match=fragment) as e:
            load_model(**kw)
    assert "\n" not in str(e.value)
    return str(e.value)


@pytest.mark.parametrize(
    "edits, fragment",
    [
        ({"meta__image_size": 8}, "'image_size' is 8, below the minimum of 64"),
        ({"meta__image_size": "64"}, "'image_size' is '64', expected an integer"),
        ({"meta__image_size": None}, "'image_size' is None, expected an integer"),
        ({"meta__image_size": 64.0}, "'image_size' is 64.0, expected an integer"),
        ({"meta__image_size": True}, "'image_size' is True, expected an integer"),
        ({"meta__num_classes": 0}, "'num_classes' is 0, below the minimum of 1"),
        ({"meta__num_classes": "2"}, "'num_classes' is '2', expected an integer"),
        ({"meta__num_classes": 10**9}, "'num_classes' is 1000000000, above the maximum"),
        ({"meta__num_classes": 3, "meta__class_names": None},
         "'num_classes' is 3, but the weights have 2"),
        ({"meta__mean": [0.5]}, "'mean' is \\[0.5\\], expected 3 numbers"),
        ({"meta__mean": 0.5}, "'mean' is 0.5, expected 3 numbers"),
        ({"meta__mean": [0.5, "a", 0.5]}, "'mean' .* expected 3 finite numbers"),
        ({"meta__mean": [0.5, float("nan"), 0.5]}, "'mean' .* expected 3 finite numbers"),
        ({"meta__std": [0.0, 0.0, 0.0]}, "'std' .* every value must be above 0"),
        ({"meta__std": [0.2, -0.2, 0.2]}, "'std' .* every value must be above 0"),
        ({"meta__std": [0.2, float("inf"), 0.2]}, "'std' .* expected 3 finite numbers"),
        ({"meta__std": [0.2] * 4}, "'std' .* expected 3 numbers"),
        ({"meta__class_names": ["a", "b", "c"]}, "'class_names' has 3 names for 2 classes"),
        ({"meta__class_names": ["a"]}, "'class_names' has 1 names for 2 classes"),
        ({"meta__class_names": ["a", 2]}, "'class_names' .* expected a list of strings"),
        ({"meta__class_names": "ab"}, "'class_names' .* expected a list of strings"),
        # One of mean/std alone was mixed with the other's ImageNet default, silently
        ({"meta__mean": ...}, "'mean' is missing while 'std' is given"),
        ({"meta__std": ...}, "'std' is missing while 'mean' is given"),
        ({"meta__class_names": ["a", "a"]}, "'class_names' names 'a' more than once"),
        ({"meta__provenance": [1]}, "'provenance' is \\[1\\], expected a mapping"),
        ({"meta__provenance": {"data": "cifar"}}, "'provenance.data' .* expected a mapping"),
        ({"meta": [1, 2]}, "'meta' is a list, expected a mapping"),
        ({"meta": "num_classes"}, "'meta' is a str, expected a mapping"),
    ],
    ids=lambda v: _edit_id(v) if isinstance(v, dict) else "",
)  # fmt: skip
def test_edited_checkpoint_metadata_is_refused_naming_file_and_field(
    tmp_path, ckpt_payload, edits, fragment
):
    path = _edited(tmp_path, ckpt_payload, **edits)
    msg = _one_line_error(CheckpointError, fragment, checkpoint=path)
    assert msg.startswith(f"{path}: metadata") and "--" not in msg  # the file, not an option


def test_metadata_image_size_is_refused_even_when_the_option_overrides_it(tmp_path, ckpt_payload):
    path = _edited(tmp_path, ckpt_payload, meta__image_size=8)
    msg = _one_line_error(CheckpointError, "'image_size' is 8", checkpoint=path, image_size=64)
    assert "--image-size" not in msg


@pytest.mark.parametrize(
    "version, fragment",
    [
        (CHECKPOINT_VERSION + 98,
         f"format version 99 is newer .*reads \\(version {CHECKPOINT_VERSION}\\)"),
        (CHECKPOINT_VERSION + 1, f"version 2 is newer .*version {CHECKPOINT_VERSION}"),
        (0, f"'version' is 0, not a format version .*reads version {CHECKPOINT_VERSION}"),
        ("1", f"'version' is '1', not a format version .*reads version {CHECKPOINT_VERSION}"),
        (None, f"'version' is None, not a format version .*reads version {CHECKPOINT_VERSION}"),
    ],
)  # fmt: skip
def test_unknown_checkpoint_versions_are_refused(tmp_path, ckpt_payload, version, fragment):
    path = _edited(tmp_path, ckpt_payload, version=version)
    msg = _one_line_error(CheckpointError, fragment, checkpoint=path)
    assert msg.startswith(str(path))


@pytest.mark.parametrize(
    "edits, check",
    [
        # the first checkpoints: no version, metadata with only some fields, or none at all
        ({"version": ...}, lambda m: m.class_names == ["cat", "dog"]),
        ({"meta": {"num_classes": 2}}, lambda m: m.image_size == 224 and m.class_names is None),
        ({"meta": {"image_size": 96}}, lambda m: m.num_classes == 2 and m.image_size == 96),
        ({"meta": {}}, lambda m: m.num_classes == 2 and m.provenance == {}),
        ({"meta": None}, lambda m: m.num_classes == 2),
        ({"meta": ...}, lambda m: m.num_classes == 2),
        # what older writers stored: empty or absent names, tuples, integer statistics
        ({"meta__class_names": []}, lambda m: m.class_names is None),
        ({"meta__class_names": ...}, lambda m: m.class_names is None),
        ({"meta__mean": (0, 0, 0), "meta__std": (1, 1, 1)},
         lambda m: m.mean == (0.0, 0.0, 0.0) and m.std == (1.0, 1.0, 1.0)),
        ({"meta__provenance": None}, lambda m: m.provenance == {}),
        ({"meta__normalization": "imagenet"}, lambda m: m.mean[0] == 0.485),  # unknown: ignored
        ({"arch": ...}, lambda m: m.image_size == 64),
    ],
    ids=lambda v: _edit_id(v) if isinstance(v, dict) else "",
)  # fmt: skip
def test_older_and_partial_checkpoints_still_load(tmp_path, ckpt_payload, edits, check):
    loaded = load_model(checkpoint=_edited(tmp_path, ckpt_payload, **edits))
    assert loaded.meta.num_classes == 2 and check(loaded.meta)


@pytest.mark.parametrize(
    "replace, fragment",
    [
        ({"classifier.6.weight": torch.tensor(1.0)},
         r"'classifier\.6\.weight' has 0 dimension\(s\) \(shape \(\)\), expected 2"),
        ({"classifier.6.weight": torch.zeros(2, 4096, 1)},
         r"'classifier\.6\.weight' has 3 dimension\(s\)"),
        ({"classifier.6.weight": torch.empty(10**9, 0)},
         r"'classifier\.6\.weight' has shape \(1000000000, 0\): 1000000000 classes"),
        ({"classifier.6.weight": torch.zeros(1).expand(1_000_001, 4096)},
         r"shape \(1000001, 4096\): 1000001 classes \(expected 1 to 1,000,000\)"),
        ({"classifier.6.weight": torch.empty(0, 4096)},
         r"'classifier\.6\.weight' has shape \(0, 4096\): 0 classes"),
        ({"classifier.6.weight": torch.zeros(2, 4095)},
         r"'classifier\.6\.weight' has shape \(2, 4095\), expected \(2, 4096\)"),
        ({"classifier.6.bias": torch.tensor(0.0)},
         r"'classifier\.6\.bias' has shape \(\), expected \(2,\)"),
        ({"features.0.weight": torch.zeros(64, 3, 11)},
         r"'features\.0\.weight' has shape \(64, 3, 11\), expected \(64, 3, 11, 11\)"),
        ({"classifier.1.bias": torch.zeros(4096, dtype=torch.int64)},
         r"'classifier\.1\.bias' is torch\.int64, expected dense floating-point"),
        ({"classifier.1.bias": torch.empty(4096, device="meta")},
         r"'classifier\.1\.bias' is a meta tensor"),
        ({"classifier.1.bias": torch.full((4096,), float("nan"))},
         r"'classifier\.1\.bias' holds NaN or infinite values"),
    ],
    ids=["fc8-scalar", "fc8-3d", "fc8-1e9x0", "fc8-too-many", "fc8-0x4096", "fc8-wrong-width",
         "fc8-bias-scalar", "conv1-3d", "int-dtype", "meta-tensor", "nan"],
)  # fmt: skip
def test_odd_tensors_in_plain_weights_give_one_line(tmp_path, replace, fragment):
    torch.save(_light_sd(**replace), tmp_path / "odd.pth")
    msg = _one_line_error(CheckpointError, fragment, weights=tmp_path / "odd.pth")
    assert msg.startswith(f"{tmp_path / 'odd.pth'}: tensor '")


def test_odd_tensors_in_a_checkpoint_give_one_line(tmp_path, ckpt_payload):
    path = _edited(
        tmp_path, ckpt_payload, state_dict=_light_sd(**{"classifier.6.weight": torch.tensor(1.0)})
    )
    fragment = r"edited\.pt: tensor 'classifier\.6\.weight' has 0"
    _one_line_error(CheckpointError, fragment, checkpoint=path)


def test_absurd_num_classes_option_is_refused():
    _one_line_error(InputError, "--num-classes must be at most 1,000,000", num_classes=10**9)


def test_state_dict_saved_from_ddp_loads_with_its_module_prefix_stripped(tmp_path, ckpt_payload):
    model = build_alexnet(num_classes=2, seed=3)
    ddp = {f"module.{k}": v for k, v in model.state_dict().items()}
    torch.save(ddp, tmp_path / "ddp.pth")
    loaded = load_model(weights=tmp_path / "ddp.pth")
    assert loaded.meta.num_classes == 2
    assert state_dict_sha256(loaded.model) == state_dict_sha256(model)
    light_ddp = {f"module.{k}": v for k, v in _light_sd().items()}
    assert load_model(checkpoint=_edited(tmp_path, ckpt_payload, state_dict=light_ddp))


def test_partial_module_prefix_is_refused_with_a_hint(tmp_path):
    mixed = {f"module.{k}": v for k, v in _light_sd().items()}
    mixed["extra"] = torch.zeros(1)  # not every key prefixed: nothing is stripped
    torch.save(mixed, tmp_path / "mixed.pth")
    msg = _one_line_error(
        CheckpointError, "no 'classifier.6.weight'", weights=tmp_path / "mixed.pth"
    )
    assert "start with 'module.'" in msg and "DistributedDataParallel" in msg
    # validate_state_dict itself (train --resume uses it) does not strip, but says why
    with pytest.raises(CheckpointError, match="start with 'module.'"):
        validate_state_dict(Path("x.pt"), {f"module.{k}": v for k, v in _light_sd().items()})


def test_an_empty_file_says_so(tmp_path):
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"empty\.pt: empty file \(0 bytes\)"):
        load_model(checkpoint=tmp_path / "empty.pt")


def test_another_image_size_runs_the_checkpoint_there_and_says_so(tmp_path, ckpt_payload, capsys):
    from alexbench.cli.model_args import note_resized

    path = _edited(tmp_path, ckpt_payload)  # trained at 64 px
    assert load_model(checkpoint=path).trained_image_size is None
    assert load_model(checkpoint=path, image_size=64).trained_image_size is None
    loaded = load_model(checkpoint=path, image_size=96)
    assert (loaded.meta.image_size, loaded.trained_image_size) == (96, 64)
    note_resized(loaded)
    err = capsys.readouterr().err
    assert err.strip() == "note: running the checkpoint at 96x96; it was trained at 64x64"


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("alexnet.pt", "a TorchScript program"),
        ("alexnet.pt2", "a torch.export program"),
        ("alexnet.onnx", "an ONNX model"),
    ],
)
def test_an_exported_model_given_as_weights_is_named(small_artifacts, name, kind):
    # torch's own message suggested weights_only=False ("will likely succeed").
    with pytest.raises(CheckpointError) as e:
        load_model(weights=small_artifacts / name)
    assert f"{name}: {kind}" in str(e.value) and "not a checkpoint or state dict" in str(e.value)
    assert "weights_only" not in str(e.value)


def test_a_state_dict_wrapped_in_a_mapping_says_where_it_is(tmp_path):
    sd = load_model(seed=0, num_classes=10, image_size=64).model.state_dict()
    torch.save({"state_dict": sd, "epoch": 3}, tmp_path / "wrapped.pt")
    with pytest.raises(CheckpointError, match=r"it holds one under 'state_dict'"):
        load_model(weights=tmp_path / "wrapped.pt")
