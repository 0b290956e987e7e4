"""Datasets, the decoded cache vs streaming, sharding and the batched transforms."""

from __future__ import annotations

import dataclasses
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from alexbench.checkpoint import NORMALIZATION_STATS, Normalization
from alexbench.errors import DataError, InputError
from alexbench.training.batches import AugmentConfig, BatchLoader, BatchTransform, augment_config
from alexbench.training.data import (
    MIN_STD,
    Augment,
    DatasetKind,
    DataSpec,
    MemorySplit,
    NormalizeChoice,
    Split,
    SplitMethod,
    StreamSplit,
    channel_stats,
    holdout,
    load_data,
    make_synthetic,
)
from alexbench.training.data_files import find_samples
from tests.conftest import SHARED_TARBALL

CIFAR_CLASSES = ["airplane", "automobile", "bird", "cat", "deer"]
CIFAR_CLASSES += ["dog", "frog", "horse", "ship", "truck"]
PER_CLASS = 20
CPU = torch.device("cpu")


def extract_cifar_subset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """DIR/train/<class>/0000..0019.jpg from the shared tarball, extracted once per session."""
    root = tmp_path_factory.getbasetemp() / "cifar-subset-20"
    if (root / "train" / "truck" / f"{PER_CLASS - 1:04d}.jpg").is_file():
        return root
    if not SHARED_TARBALL.is_file():
        pytest.skip(f"shared data not found at {SHARED_TARBALL}")
    wanted = {f"{i:04d}.jpg" for i in range(PER_CLASS)}
    with tarfile.open(SHARED_TARBALL) as tar:
        members = [m for m in tar if m.isfile() and m.name.rsplit("/", 1)[-1] in wanted]
        tar.extractall(root, members=members, filter="data")
    return root


@pytest.fixture(scope="session")
def cifar20(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return extract_cifar_subset(tmp_path_factory)


def folder_spec(root: Path, **kw: object) -> DataSpec:
    kw = {"image_size": 64, **kw}
    return DataSpec(kind=DatasetKind.IMAGEFOLDER, data_dir=root, **kw)  # type: ignore[arg-type]


def test_imagefolder_decodes_into_memory_with_seeded_holdout(cifar20: Path) -> None:
    data = load_data(folder_spec(cifar20))
    assert data.class_names == CIFAR_CLASSES
    train, val = data.splits[Split.TRAIN], data.splits[Split.VAL]
    assert isinstance(train, MemorySplit) and isinstance(val, MemorySplit)
    assert (len(train), len(val)) == (179, 21)  # each image by its path hash: about 10%
    assert train.images.dtype == torch.uint8 and tuple(train.images.shape[1:]) == (3, 32, 32)
    assert data.skipped == []
    # "dataset" normalisation is measured from the decoded training images
    assert data.mean == channel_stats(train.images)[0]
    assert data.mean != NORMALIZATION_STATS[Normalization.IMAGENET][0]


@pytest.mark.parametrize("method", list(SplitMethod))
def test_holdout_is_seeded_and_disjoint(method: SplitMethod) -> None:
    samples = [(f"d/c{i % 3}/f{i}.jpg", i % 3) for i in range(500)]
    train, val = holdout(samples, 0.2, 1, method, "d")
    assert 70 <= len(val) <= 130 and not set(train) & set(val)
    assert sorted(train + val) == sorted(samples)
    assert holdout(samples, 0.2, 1, method, "d") == (train, val)
    assert holdout(samples, 0.2, 2, method, "d")[1] != val


def test_the_hash_split_keeps_held_out_images_held_out_when_the_folder_changes() -> None:
    # The shuffle split moved 39 of 40 held-out images when one image was added, so evaluate
    # scored images the model had trained on as held out (25% became 85% in an audit).
    samples = [(f"/data/c{i % 10}/{i:04d}.jpg", i % 10) for i in range(400)]
    _, val = holdout(samples, 0.1, 0, SplitMethod.HASH, "/data")
    grown = [*samples, ("/data/c3/new.jpg", 3)]
    _, val_grown = holdout(grown, 0.1, 0, SplitMethod.HASH, "/data")
    assert set(val) <= set(val_grown) and len(set(val_grown) - set(val)) <= 1
    shrunk = [s for s in samples if s != samples[7]]
    train_shrunk, _ = holdout(shrunk, 0.1, 0, SplitMethod.HASH, "/data")
    assert not set(train_shrunk) & set(val)  # nothing held out became training data
    # the folder may move: the split is by the path within it
    moved = [(p.replace("/data/", "/mnt/x/"), y) for p, y in samples]
    assert [p for p, _ in holdout(moved, 0.1, 0, SplitMethod.HASH, "/mnt/x")[1]] == [
        p.replace("/data/", "/mnt/x/") for p, _ in val
    ]
    _, val_shuffled = holdout(grown, 0.1, 0, SplitMethod.SHUFFLE)
    _, val_before = holdout(samples, 0.1, 0, SplitMethod.SHUFFLE)
    assert len(set(val_shuffled) & set(val_before)) < 10  # why the old split was replaced
    tiny = [("/t/a/1.jpg", 0), ("/t/b/2.jpg", 1), ("/t/b/3.jpg", 1)]
    assert len(holdout(tiny, 0.01, 0, SplitMethod.HASH, "/t")[1]) == 1  # at least one image


def test_the_file_fingerprint_is_the_same_for_dir_and_dir_train(cifar20: Path) -> None:
    # evaluate takes DIR and DIR/train for one folder; a resume given the other spelling was
    # refused as "other files"
    a = load_data(folder_spec(cifar20, val_fraction=0.2)).fingerprint
    b = load_data(folder_spec(cifar20 / "train", val_fraction=0.2)).fingerprint
    assert a == b and a is not None and a["train"] + a["val"] == 200


def test_streaming_yields_the_same_batches_as_the_cache(cifar20: Path) -> None:
    mem = load_data(folder_spec(cifar20), (Split.VAL,))
    stream = load_data(folder_spec(cifar20, cache_limit_bytes=0), (Split.VAL,))
    assert isinstance(stream.splits[Split.VAL], StreamSplit)
    kw = dict(device=CPU, shuffle=False, drop_last=False)
    a = list(BatchLoader(mem.splits[Split.VAL], 8, **kw).epoch(0))
    b = list(BatchLoader(stream.splits[Split.VAL], 8, workers=0, **kw).epoch(0))
    assert len(a) == len(b) == 3
    for (xa, ya), (xb, yb) in zip(a, b, strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)


def test_mixed_image_sizes_are_cached_at_the_output_size(cifar20: Path, tmp_path: Path) -> None:
    from PIL import Image

    root = tmp_path / "mixed"
    shutil.copytree(cifar20 / "train", root / "train")
    # The first file is CIFAR's 32 px; one class of larger photos must not be shrunk to 32 px.
    for i, path in enumerate(sorted((root / "train" / "truck").iterdir())):
        path.unlink()
        Image.new("RGB", (100, 80), (i * 10, 50, 200)).save(path.with_suffix(".png"))
    data = load_data(folder_spec(root))
    train = data.splits[Split.TRAIN]
    assert isinstance(train, MemorySplit) and tuple(train.images.shape[1:]) == (3, 64, 64)
    assert "64 px" in data.description


def test_one_large_image_among_probed_small_ones_is_not_shrunk(
    cifar20: Path, tmp_path: Path
) -> None:
    from PIL import Image

    # 200 CIFAR images (32 px) and one 512 px photo that the ~64 sampled headers miss: the decode
    # pass finds it, and the folder is stored at the output size instead of CIFAR's 32 px.
    root = tmp_path / "one-large"
    shutil.copytree(cifar20 / "train", root / "train")
    big = root / "train" / "truck" / "0003b.png"
    Image.new("RGB", (512, 512), (200, 30, 60)).save(big)
    for limit in (2 * 1024**3, 0):  # decoded in memory, and streamed
        data = load_data(folder_spec(root, val_fraction=0.5, cache_limit_bytes=limit))
        assert "64 px" in data.description, data.description
    streamed = load_data(folder_spec(root, val_fraction=0.5, cache_limit_bytes=0))
    assert all(s.resolution == 64 for s in streamed.splits.values())  # type: ignore[union-attr]
    plain = load_data(folder_spec(cifar20, val_fraction=0.5))  # every image 32 px: kept native
    assert "32 px" in plain.description


def test_sixteen_bit_images_are_scaled_to_eight_bits(tmp_path: Path) -> None:
    from PIL import Image

    from alexbench.training.data_files import decode_image

    grey8 = (np.arange(48 * 48) % 256).astype(np.uint8).reshape(48, 48)
    Image.fromarray(grey8).save(tmp_path / "g8.png")
    Image.fromarray(grey8.astype(np.uint16) * 257).save(tmp_path / "g16.png")  # torchvision
    Image.fromarray(grey8.astype(np.uint16) * 257).save(tmp_path / "g16.tif")  # PIL
    eight = decode_image(str(tmp_path / "g8.png"), 48)
    assert eight is not None and eight.dtype == torch.uint8
    for name in ("g16.png", "g16.tif"):
        img = decode_image(str(tmp_path / name), 48)
        assert img is not None and img.dtype == torch.uint8 and img.shape == (3, 48, 48), name
        assert torch.equal(img, eight), name
    # 32-bit samples that hold 8-bit values read as 8-bit; a dark 16-bit PGM (it opens as the
    # same 32-bit mode) reads as 16-bit, as the 16-bit PNG of its pixels does.
    Image.fromarray(grey8.astype(np.int32)).save(tmp_path / "g32.tif")
    assert torch.equal(decode_image(str(tmp_path / "g32.tif"), 48), eight)
    dark = grey8.astype(">u2")  # every value <= 255 of 65535
    (tmp_path / "dark.pgm").write_bytes(b"P5\n48 48\n65535\n" + dark.tobytes())
    Image.fromarray(dark.astype(np.uint16)).save(tmp_path / "dark.png")
    from_pgm = decode_image(str(tmp_path / "dark.pgm"), 48)
    assert torch.equal(from_pgm, decode_image(str(tmp_path / "dark.png"), 48))
    assert from_pgm.max() == 0  # 255 of 65535 is under one 8-bit level, not 255 of 255
    # A folder that mixes the two decodes to one dtype: batches stack, pixels do not wrap.
    for i, name in enumerate(("g8.png", "g16.png", "g16.tif")):
        for cls in ("a", "b"):
            (tmp_path / "mix" / cls).mkdir(parents=True, exist_ok=True)
            shutil.copy(tmp_path / name, tmp_path / "mix" / cls / f"{i}{Path(name).suffix}")
    for limit in (2 * 1024**3, 0):
        # one image held out (the fewest a split takes), the other 5 of both kinds in training
        data = load_data(folder_spec(tmp_path / "mix", val_fraction=0.01, cache_limit_bytes=limit))
        loader = BatchLoader(
            data.splits[Split.TRAIN], 8, device=CPU, shuffle=False, drop_last=False, workers=0
        )
        ((images, _),) = list(loader.epoch(0))
        assert images.dtype == torch.uint8 and len(images) == 5
        assert all(torch.equal(im, images[0]) for im in images)


def test_flat_layout_and_explicit_val_split(cifar20: Path, tmp_path: Path) -> None:
    flat = tmp_path / "flat"
    shutil.copytree(cifar20 / "train", flat)
    assert load_data(folder_spec(flat)).class_names == CIFAR_CLASSES
    tree = tmp_path / "tree"
    for cls in ("cat", "dog"):
        for split, files in (("train", range(0, 15)), ("val", range(15, 20))):
            (tree / split / cls).mkdir(parents=True)
            for i in files:
                shutil.copy(cifar20 / "train" / cls / f"{i:04d}.jpg", tree / split / cls)
    data = load_data(folder_spec(tree))
    assert (len(data.splits[Split.TRAIN]), len(data.splits[Split.VAL])) == (30, 10)
    assert "val = val/" in data.description


def test_val_split_without_train_folder_is_an_error(cifar20: Path, tmp_path: Path) -> None:
    root = tmp_path / "flat"
    shutil.copytree(cifar20 / "train" / "cat", root / "cat")
    shutil.copytree(cifar20 / "train" / "dog", root / "val" / "dog")
    with pytest.raises(DataError, match="has val/ but no train/"):
        load_data(folder_spec(root))


def test_classes_named_train_or_test_are_classes_and_stray_folders_beside_train_are_named(
    cifar20: Path, tmp_path: Path
) -> None:
    # A class folder named train or test was read as a split folder: "no class folders", or
    # "has test/ but no train/", or (train/ with subfolders) every other class left out.
    def fill(folder: Path, src: str) -> None:
        folder.mkdir(parents=True)
        for f in sorted((cifar20 / "train" / src).iterdir())[:4]:
            shutil.copy(f, folder / f.name)

    classes = tmp_path / "classes"
    for name, src in (("bus", "cat"), ("car", "dog"), ("test", "frog"), ("train", "ship")):
        fill(classes / name, src)
    data = load_data(folder_spec(classes, val_fraction=0.25))
    assert data.class_names == ["bus", "car", "test", "train"]
    assert len(data.files[Split.TRAIN]) + len(data.files[Split.VAL]) == 16
    split = tmp_path / "split"
    for name, src in (("cat", "cat"), ("dog", "dog")):
        fill(split / "train" / name, src)
    fill(split / "extras" / "frog", "frog")  # not a class of train/: it would be left out
    with pytest.raises(DataError, match=r"extras/ beside the split folders train/ would be ign"):
        load_data(folder_spec(split, val_fraction=0.25))


def test_images_beside_the_class_or_split_folders_are_refused_not_left_out(
    cifar20: Path, tmp_path: Path
) -> None:
    # ImageFolder lists only images inside class folders: these had no class and were dropped.
    flat = tmp_path / "flat"
    shutil.copytree(cifar20 / "train", flat)
    shutil.copy(cifar20 / "train" / "cat" / "0000.jpg", flat / "stray.jpg")
    shutil.copy(cifar20 / "train" / "cat" / "0001.jpg", flat / "stray2.JPG")
    (flat / "notes.txt").write_text("not an image: no reason to refuse")
    with pytest.raises(DataError, match=r"flat: stray.jpg and 1 more beside the class folders"):
        load_data(folder_spec(flat))
    tree = tmp_path / "tree"
    for split in ("train", "val"):
        for cls in ("cat", "dog"):
            shutil.copytree(cifar20 / "train" / cls, tree / split / cls)
    assert load_data(folder_spec(tree)).class_names == ["cat", "dog"]
    (tree / "cover.png").write_bytes((flat / "stray.jpg").read_bytes())
    with pytest.raises(DataError, match=r"tree: cover.png beside the split folders"):
        load_data(folder_spec(tree))
    (tree / "cover.png").unlink()
    # In train/, it stops training, but not the scoring of val/ (train/ only numbers classes).
    shutil.copy(flat / "stray.jpg", tree / "train" / "stray.jpg")
    with pytest.raises(DataError, match=r"train: stray.jpg beside the class folders"):
        load_data(folder_spec(tree))
    assert len(load_data(folder_spec(tree), (Split.VAL,)).files[Split.VAL]) == 40
    (tree / "train" / "stray.jpg").unlink()
    shutil.copy(flat / "stray.jpg", tree / "val" / "stray.jpg")  # the scored set's own root
    with pytest.raises(DataError, match=r"val: stray.jpg beside the class folders"):
        load_data(folder_spec(tree), (Split.VAL,))


def test_a_class_held_out_whole_says_how_to_keep_some(cifar20: Path, tmp_path: Path) -> None:
    root = tmp_path / "d"
    for cls, n in (("cat", 8), ("dog", 1)):
        (root / cls).mkdir(parents=True)
        for src in sorted((cifar20 / "train" / cls).iterdir())[:n]:
            shutil.copy(src, root / cls / src.name)
    spec = folder_spec(root, val_fraction=0.3)
    samples = find_samples(root)[1]
    seed = next(  # a split seed that holds out dog's one image
        s for s in range(200)
        if any(y == 1 for _, y in holdout(samples, 0.3, s, spec.split_method, root)[1])
    )  # fmt: skip
    with pytest.raises(DataError, match=r"^class dog: no training image, all went to validation "
                       r"\(a smaller --val-fraction or a val/ folder keeps some\)$"):  # fmt: skip
        load_data(dataclasses.replace(spec, split_seed=seed))
    for extra in sorted((root / "cat").iterdir())[1:]:  # one image each: one is held out
        extra.unlink()
    only = r"its only image is the one image held out \(a val/ folder or more images help\)$"
    with pytest.raises(DataError, match=rf"^class (cat|dog): no training image, {only}"):
        load_data(dataclasses.replace(spec, val_fraction=0.01))
    # Streamed (--cache-limit-gb 0) too: it trained, and the checkpoint claimed a class it
    # had never seen an image of.
    with pytest.raises(DataError, match=rf"^class (cat|dog): no training image, {only}"):
        load_data(dataclasses.replace(spec, val_fraction=0.01, cache_limit_bytes=0))


def test_a_class_folder_linked_to_another_class_is_refused(tmp_path: Path) -> None:
    from PIL import Image

    for cls in ("a", "b"):
        (tmp_path / "d" / cls).mkdir(parents=True)
        Image.new("RGB", (8, 8)).save(tmp_path / "d" / cls / "x.png")
    spec = folder_spec(tmp_path / "d", val_fraction=0.5)
    (tmp_path / "d" / "a" / "sub").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "d" / "a" / "sub" / "y.png")
    both = r"classes {} and {} both hold .*{} \(through a link\): its images would be in two"
    links = [("c", "a", "a", "a"), ("c", "a/sub", "a", "sub"), ("b/more", "a", "a", "a")]
    for link, target, first, real in links:  # a class folder, one into a class, one inside
        (tmp_path / "d" / link).symlink_to(tmp_path / "d" / target, target_is_directory=True)
        second = link.split("/")[0]
        with pytest.raises(DataError, match=both.format(first, second, real)):
            load_data(spec)
        (tmp_path / "d" / link).unlink()


def test_a_folder_of_unreadable_images_is_named(tmp_path: Path) -> None:
    for cls in ("a", "b"):
        (tmp_path / "fake" / cls).mkdir(parents=True)
        (tmp_path / "fake" / cls / "x.jpg").write_bytes(b"not an image")
    with pytest.raises(DataError, match=r"fake/(a|b|val)?.*could not be read"):
        load_data(folder_spec(tmp_path / "fake", val_fraction=0.5))


def test_a_drawn_validation_split_of_one_unreadable_file_says_how_to_redraw(
    cifar20: Path, tmp_path: Path
) -> None:
    # 12 good images could not train because the hash split held out only the broken file, and
    # the message named that file as a folder ("none of the 1 images").
    root = tmp_path / "d"
    for cls in ("cat", "dog"):
        (root / cls).mkdir(parents=True)
        for src in sorted((cifar20 / "train" / cls).iterdir())[:6]:
            shutil.copy(src, root / cls / src.name)
    (root / "cat" / "zero.jpg").write_bytes(b"")
    spec = folder_spec(root, val_fraction=0.1)
    seed = next(  # a split seed that holds out the broken file alone
        s for s in range(200)
        if [p for p, _ in holdout(find_samples(root)[1], 0.1, s, spec.split_method, root)[1]]
        == [str(root / "cat" / "zero.jpg")]
    )  # fmt: skip
    with pytest.raises(DataError) as info:
        load_data(dataclasses.replace(spec, split_seed=seed))
    assert str(info.value) == (
        f"{root / 'cat' / 'zero.jpg'}: the val split's only image could not be read; another "
        "--split-seed or --val-fraction draws other files"
    )


def test_corrupt_image_is_skipped_not_fatal(cifar20: Path, tmp_path: Path) -> None:
    root = tmp_path / "d"
    shutil.copytree(cifar20 / "train" / "cat", root / "train" / "cat")
    shutil.copytree(cifar20 / "train" / "dog", root / "train" / "dog")
    (root / "train" / "dog" / "9999.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    data = load_data(folder_spec(root, val_fraction=0.5))
    assert [Path(p).name for p in data.skipped] == ["9999.jpg"]
    assert len(data.splits[Split.TRAIN]) + len(data.splits[Split.VAL]) == 40
    stream = load_data(folder_spec(root, val_fraction=0.5, cache_limit_bytes=0))
    assert "ImageNet mean/std (a streamed folder is not measured)" in stream.description
    assert "ImageNet" not in data.description  # measured in memory
    loaders = [
        BatchLoader(stream.splits[s], 64, device=CPU, shuffle=False, drop_last=False, workers=0)
        for s in Split
    ]
    assert sum(y.numel() for loader in loaders for _, y in loader.epoch(0)) == 40
    assert sum(loader.skipped for loader in loaders) == 1


def test_all_unreadable_training_batch_under_ddp_fails_instead_of_hanging(
    tmp_path: Path,
) -> None:
    bad = []
    for i in range(4):
        bad.append(tmp_path / f"bad{i}.jpg")
        bad[-1].write_bytes(b"\xff\xd8 not a jpeg")
    split = StreamSplit([(str(path), 0) for path in bad], resolution=32)
    kw = dict(device=CPU, shuffle=False, drop_last=True, workers=0)
    # One process skips the batch and goes on; under DDP every rank must take the same
    # number of steps, so it fails in one line instead of leaving the others waiting.
    single = BatchLoader(split, 2, **kw)
    assert list(single.epoch(0)) == [] and single.skipped == 4
    with pytest.raises(DataError, match="unreadable; remove"):
        list(BatchLoader(split, 2, world_size=2, rank=1, **kw).epoch(0))


@pytest.mark.parametrize(
    ("layout", "message"),
    [
        ("missing", "no such directory"),
        ("no-classes", "no class folders"),
        ("empty-class", "class folder has no images"),
    ],
)
def test_bad_folders_give_one_line_errors(tmp_path: Path, layout: str, message: str) -> None:
    root = tmp_path / "data"
    if layout != "missing":
        (root / "train").mkdir(parents=True)
    if layout == "empty-class":
        (root / "train" / "cat").mkdir()
        (root / "train" / "cat" / "notes.txt").write_text("no images here")
    with pytest.raises(DataError, match=message) as info:
        load_data(folder_spec(root))
    assert "\n" not in str(info.value)


def test_a_class_none_of_whose_images_can_be_read_and_a_single_class_are_refused(
    tmp_path: Path,
) -> None:
    from PIL import Image

    root = tmp_path / "data"
    for cls in ("cat", "dog"):
        (root / cls).mkdir(parents=True)
        for i in range(4):
            Image.new("RGB", (32, 32), (40 * i, 90, 10)).save(root / cls / f"{i}.png")
    (root / "zzz").mkdir()
    for i in range(4):  # a class the model would have an output for and never see
        (root / "zzz" / f"{i}.jpg").write_bytes(b"")
    with pytest.raises(
        DataError, match=r"class zzz: no training image, none of its \d could be read"
    ):
        load_data(folder_spec(root, val_fraction=0.25))
    shutil.rmtree(root / "zzz")
    shutil.rmtree(root / "dog")  # one class: loss 0 and top-1 100% from the first step
    with pytest.raises(DataError, match=r"one class folder \(cat\); training needs at least 2"):
        load_data(folder_spec(root, val_fraction=0.25))


def test_an_image_over_the_pixel_limit_is_skipped_before_it_is_decoded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A 745 KB PNG of 16000 x 16000 decoded to 768 MB: torchvision's decoders have no limit.
    from PIL import Image

    from alexbench.training.data_files import decode_image

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100 * 100)
    Image.new("RGB", (120, 120)).save(tmp_path / "big.png")
    Image.new("RGB", (90, 90)).save(tmp_path / "small.png")
    assert decode_image(str(tmp_path / "big.png"), 32) is None
    assert decode_image(str(tmp_path / "small.png"), 32) is not None


def test_a_sliver_whose_resize_would_pass_the_pixel_limit_is_left_out_without_a_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 20000 x 1 px is 60 KB decoded, but its shorter side resized to 256 is 5.1 million px long.
    import warnings

    from PIL import Image

    from alexbench.training.data_files import decode_image, resolution_for

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100 * 100)
    Image.new("RGB", (200, 2)).save(tmp_path / "sliver.png")  # 32 x 3200 px once resized
    Image.new("RGB", (40, 20)).save(tmp_path / "wide.png")  # 32 x 64 px
    Image.new("RGB", (120, 120)).save(tmp_path / "big.png")  # over the limit: PIL warns
    assert decode_image(str(tmp_path / "sliver.png"), 32) is None
    assert decode_image(str(tmp_path / "wide.png"), 32).shape == (3, 32, 32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # reading the headers says nothing of its own
        assert resolution_for([str(tmp_path / "big.png")], 32) == 32


def test_an_animated_gif_under_a_jpg_name_reads_as_its_first_frame(tmp_path: Path) -> None:
    # The decoder goes by content, not name: torchvision returns (frames, 3, H, W) for it.
    from PIL import Image

    from alexbench.training.data_files import decode_image

    frames = [Image.new("RGB", (40, 40), c) for c in ((200, 10, 10), (10, 200, 10))]
    frames[0].save(tmp_path / "a.jpg", format="GIF", save_all=True, append_images=frames[1:])
    img = decode_image(str(tmp_path / "a.jpg"), 32)
    assert img is not None and img.shape == (3, 32, 32)
    with Image.open(tmp_path / "a.jpg") as pil:  # PIL's (and ImageFolder's) first frame
        first = torch.from_numpy(np.array(pil.convert("RGB"))).permute(2, 0, 1)
    assert torch.equal(img[:, 16, 16], first[:, 20, 20])


def test_missing_cifar10_says_where_it_looked(tmp_path: Path) -> None:
    with pytest.raises(DataError) as info:
        load_data(DataSpec(kind=DatasetKind.CIFAR10, data_dir=tmp_path, image_size=64))
    msg = str(info.value)
    assert str(tmp_path) in msg and "--download" in msg and "\n" not in msg


def test_a_failed_download_leaves_no_empty_folder(tmp_path: Path, monkeypatch) -> None:
    """Offline, --download made DIR (and its parents) and left them empty (an audit)."""
    import urllib.error

    import torchvision.datasets

    def offline(root: str, **_kw: object) -> None:
        Path(root).mkdir(parents=True, exist_ok=True)  # as torchvision does before fetching
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", offline)
    spec = DataSpec(kind=DatasetKind.CIFAR10, data_dir=tmp_path / "a" / "cifar", image_size=64,
                    download=True)  # fmt: skip
    with pytest.raises(DataError, match="could not download CIFAR-10 into"):
        load_data(spec)
    assert not (tmp_path / "a").exists()
    (tmp_path / "mine").mkdir()  # a folder that was there stays
    with pytest.raises(DataError):
        load_data(dataclasses.replace(spec, data_dir=tmp_path / "mine"))
    assert (tmp_path / "mine").is_dir()


def test_image_size_below_minimum_is_rejected() -> None:
    with pytest.raises(InputError, match="below the minimum of 64"):
        DataSpec(kind=DatasetKind.SYNTHETIC, image_size=32)
    for bad in (0.0, 0.001, 1.5):
        with pytest.raises(InputError, match="--crop-fraction must be in"):
            DataSpec(kind=DatasetKind.SYNTHETIC, crop_fraction=bad)


def test_evaluation_crop_matches_torchvision_resize_256_centre_crop_224(tmp_path: Path) -> None:
    import torchvision.transforms.v2 as T
    from PIL import Image

    gen = np.random.default_rng(0)
    for split in ("train", "val"):
        for cls in ("a", "b"):
            (tmp_path / split / cls).mkdir(parents=True)
            pixels = gen.integers(0, 256, (300, 400, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / split / cls / "0.png")
    data = load_data(folder_spec(tmp_path, image_size=224, crop_fraction=0.875))
    assert "resize 256, centre crop 224" in data.description
    train = data.splits[Split.TRAIN]
    assert isinstance(train, MemorySplit) and tuple(train.images.shape[1:]) == (3, 256, 256)
    ours = BatchTransform(224, (0.0,) * 3, (1.0,) * 3, crop_fraction=0.875)(train.images)
    reference = T.Compose([T.PILToTensor(), T.Resize(256), T.CenterCrop(224)])
    with Image.open(tmp_path / "train" / "a" / "0.png") as im:
        expected = reference(im.convert("RGB")).float() / 255
    assert torch.equal(ours[0], expected)


def test_synthetic_is_seeded_balanced_and_class_dependent() -> None:
    a, b = make_synthetic(200, 10, seed=3), make_synthetic(200, 10, seed=3)
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    assert not torch.equal(a.images, make_synthetic(200, 10, seed=4).images)
    assert torch.bincount(a.labels).tolist() == [20] * 10
    means = torch.stack([a.images[a.labels == c].float().mean((0, 2, 3)) for c in range(10)])
    assert torch.cdist(means, means).add(torch.eye(10) * 1e3).min() > 5  # classes differ in colour


def test_eval_transform_resizes_and_normalises() -> None:
    mean, std = (0.5, 0.25, 0.75), (0.2, 0.1, 0.3)
    images = torch.tensor([128, 64, 191], dtype=torch.uint8).view(1, 3, 1, 1).expand(4, 3, 32, 32)
    x = BatchTransform(64, mean, std, channels_last=True)(images)
    assert x.shape == (4, 3, 64, 64) and x.is_contiguous(memory_format=torch.channels_last)
    expected = (torch.tensor([128, 64, 191]) / 255 - torch.tensor(mean)) / torch.tensor(std)
    assert torch.allclose(x.mean((0, 2, 3)), expected.float(), atol=1e-5)


def test_augmentation_is_seeded_and_flip_mirrors() -> None:
    images = torch.randint(0, 256, (16, 3, 32, 32), dtype=torch.uint8)
    tf = BatchTransform(64, (0.5,) * 3, (0.25,) * 3, AugmentConfig())
    out = [tf(images, torch.Generator().manual_seed(s)) for s in (0, 0, 1)]
    assert torch.equal(out[0], out[1]) and not torch.equal(out[0], out[2])
    assert torch.isfinite(out[0]).all()
    flip_only = BatchTransform(64, (0.5,) * 3, (0.25,) * 3, AugmentConfig(0, True, 0, 0))
    plain = BatchTransform(64, (0.5,) * 3, (0.25,) * 3)(images)
    flipped = flip_only(images, torch.Generator().manual_seed(0))
    same = (flipped - plain).abs().amax((1, 2, 3)) < 1e-5
    mirrored = (flipped - plain.flip(3)).abs().amax((1, 2, 3)) < 1e-5
    assert (same | mirrored).all() and same.any() and mirrored.any()


def test_augment_levels_and_old_checkpoints() -> None:
    assert augment_config(Augment.NONE) is None
    crop_flip = augment_config(Augment.CROP_FLIP)
    assert crop_flip is not None and crop_flip.rotation_deg == 0 and crop_flip.jitter == 0
    assert crop_flip.flip and crop_flip.pad_fraction > 0
    full = augment_config(Augment.FULL)
    assert full is not None and full.rotation_deg > 0 and full.jitter > 0
    spec = DataSpec(kind=DatasetKind.SYNTHETIC, image_size=64, augment=Augment.FULL)
    assert DataSpec.from_dict(spec.to_dict()) == spec
    # Runs recorded before the levels existed stored a bool.
    assert DataSpec.from_dict({**spec.to_dict(), "augment": True}).augment is Augment.FULL
    assert DataSpec.from_dict({**spec.to_dict(), "augment": False}).augment is Augment.NONE


def test_loader_shards_are_disjoint_equal_and_reshuffled() -> None:
    split = MemorySplit(torch.zeros(103, 3, 2, 2, dtype=torch.uint8), torch.arange(103))

    def loader(rank: int) -> BatchLoader:
        kw = dict(device=CPU, shuffle=True, drop_last=True, seed=5, world_size=2)
        return BatchLoader(split, 10, rank=rank, **kw)

    r0, r1 = loader(0).indices(0), loader(1).indices(0)
    assert len(loader(0)) == len(loader(1)) == 5 and r0.numel() == r1.numel() == 50
    assert not set(r0.tolist()) & set(r1.tolist())
    assert torch.equal(r0, loader(0).indices(0)) and not torch.equal(r0, loader(0).indices(1))
    # A set smaller than one batch still yields one (partial) batch instead of none.
    tiny = BatchLoader(split, 500, device=CPU, shuffle=True, drop_last=True)
    assert len(tiny) == 1 and sum(y.numel() for _, y in tiny.epoch(0)) == 103


def test_channel_stats_match_numpy() -> None:
    images = torch.randint(0, 256, (7, 3, 5, 6), dtype=torch.uint8)
    mean, std = channel_stats(images, chunk=3)
    ref = images.numpy().astype(np.float64) / 255
    assert np.allclose(mean, ref.mean((0, 2, 3)), atol=1e-4)
    assert np.allclose(std, ref.std((0, 2, 3)), atol=1e-4)
    images[:, 2] = 0  # a channel that never varies: one grey level, not a division by 0
    assert channel_stats(images)[1][2] == MIN_STD


def test_normalize_choice_overrides_dataset_statistics() -> None:
    spec = DataSpec(kind=DatasetKind.SYNTHETIC, image_size=64, synthetic_size=20,
                    normalize=NormalizeChoice.IMAGENET)  # fmt: skip
    assert load_data(spec).mean == NORMALIZATION_STATS[Normalization.IMAGENET][0]


def test_evaluation_scores_a_shipped_test_set_whole(cifar20: Path, tmp_path: Path) -> None:
    """Test sets shipped as DIR/<class>/*.jpg or DIR/test/<class>/ (no train/ beside them)
    are scored image by image, every one of them; a training folder's held-out part stays the
    held-out part."""
    flat = tmp_path / "flat"
    for name in ("cat", "dog"):
        shutil.copytree(cifar20 / "train" / name, flat / name)
    total = sum(1 for _ in flat.rglob("*.jpg"))
    whole = load_data(folder_spec(flat, val_fraction=0.0), (Split.VAL,))
    assert len(whole.splits[Split.VAL]) == total
    assert f"every image of {flat}" in whole.description and f"{total} images" in whole.description
    part = load_data(folder_spec(flat, val_fraction=0.25), (Split.VAL,))
    assert len(part.splits[Split.VAL]) < total and "held out from training" in part.description
    shipped = tmp_path / "shipped"
    shutil.copytree(flat, shipped / "test")
    data = load_data(folder_spec(shipped), (Split.VAL,))  # no train/: still scored, whole
    assert len(data.splits[Split.VAL]) == total and data.class_names == ["cat", "dog"]
    with pytest.raises(DataError, match="has test/ but no train/"):
        load_data(folder_spec(shipped / ".." / "shipped"))  # training from it stays refused


def test_real_image_inputs_get_the_models_evaluation_crop(tmp_path: Path) -> None:
    from PIL import Image

    from alexbench.checkpoint import TORCHVISION_CROP, ModelMeta, load_model
    from alexbench.inputs import image_inputs

    image = np.zeros((80, 80, 3), np.uint8)
    image[:3], image[-3:], image[:, :3], image[:, -3:] = 255, 255, 255, 255  # a white frame
    (tmp_path / "img").mkdir()
    Image.fromarray(image).save(tmp_path / "img" / "framed.png")
    meta = ModelMeta(num_classes=10, image_size=64, mean=(0.0,) * 3, std=(1.0,) * 3)
    whole = image_inputs(tmp_path / "img", 1, meta)
    cropped = image_inputs(tmp_path / "img", 1, meta, crop_fraction=TORCHVISION_CROP)
    assert whole.batch[0, :, 0, 0].min() > 0.9  # the frame is in the whole image ...
    assert cropped.batch[0, :, 0, 0].max() < 0.1  # ... and cropped away at 224/256
    assert "centre crop 0.875" in cropped.description and "crop" not in whole.description
    # Which crop a model gets: torchvision-style weights 224/256, alexbench's own whole images.
    weights = tmp_path / "w.pth"
    torch.save(load_model(num_classes=10, image_size=64).model.state_dict(), weights)
    assert load_model(weights=weights, image_size=64).eval_crop_fraction == TORCHVISION_CROP
    assert load_model(num_classes=10, image_size=64).eval_crop_fraction == 1.0


def test_verify_images_are_not_the_calibration_images_of_the_same_folder(cifar20: Path) -> None:
    # Both drew the seed-0 order's first images: int8 was verified on its calibration set
    # (max error 0.097 there, 3.09 on other images; both PASS).
    from alexbench.checkpoint import ModelMeta
    from alexbench.inputs import image_inputs

    meta = ModelMeta(num_classes=10, image_size=64)
    calib = image_inputs(cifar20, 32, meta, 0, "--calib-data").batch
    verify = image_inputs(cifar20, 32, meta, 0, "--data-dir", from_end=True).batch
    flat_c, flat_v = calib.reshape(32, -1), verify.reshape(32, -1)
    assert not any((flat_v == row).all(axis=1).any() for row in flat_c)


def test_image_files_follow_linked_folders_once_and_take_torchvisions_extensions(tmp_path):
    """As torchvision's ImageFolder reads a folder: linked sub-folders followed (a link back up
    the tree read once, not forever), .pgm among the extensions."""
    import os

    from alexbench.training.data_files import image_files

    cls = tmp_path / "cls"
    (cls / "sub").mkdir(parents=True)
    (cls / "x.jpg").write_bytes(b"1")
    (cls / "sub" / "y.pgm").write_bytes(b"2")
    os.symlink(cls, cls / "sub" / "loop")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "z.png").write_bytes(b"3")
    os.symlink(outside, cls / "linked")
    os.symlink(tmp_path, cls / "up")  # above the class: its siblings are not this class's
    names = [os.path.relpath(p, cls) for p in image_files(cls)]
    assert names == ["x.jpg", os.path.join("linked", "z.png"), os.path.join("sub", "y.pgm")]


def test_calibration_uses_the_images_it_has_and_a_count_that_cannot_fit_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`export --calib-samples 1000000000` on a 12-image folder repeated the images up to that
    count and ended in an out-of-memory error naming --batch and --image-size."""
    from PIL import Image

    from alexbench import environment
    from alexbench.checkpoint import ModelMeta
    from alexbench.inputs import image_inputs

    (tmp_path / "img").mkdir()
    for i in range(3):
        Image.new("RGB", (40, 40), (80 * i, 20, 20)).save(tmp_path / "img" / f"{i}.png")
    meta = ModelMeta(num_classes=10, image_size=64)
    option = "--calib-samples"
    calib = image_inputs(tmp_path / "img", 10**9, meta, repeat=False, count_option=option)
    assert calib.batch.shape[0] == 3
    assert calib.shortfall == f"only 3 image(s) for the 1000000000 asked for by {option}: all used"
    assert image_inputs(tmp_path / "img", 8, meta).batch.shape[0] == 8  # a batch is filled
    too_many = r"^--batch 1,000,000,000: 1,000,000,000 images of 64 px need about [\d,.]+ GiB, "
    with pytest.raises(DataError, match=too_many + r"more than the [\d,.]+ GiB available$"):
        image_inputs(tmp_path / "img", 10**9, meta)
    monkeypatch.setattr(environment, "available_memory_bytes", lambda: 10**5)
    with pytest.raises(DataError, match="^--calib-samples 100: 3 images of 64 px need about"):
        image_inputs(tmp_path / "img", 100, meta, repeat=False, count_option=option)


def test_class_folders_differing_only_in_unicode_form_are_refused(cifar20: Path, tmp_path: Path):
    """Composed and decomposed "äutö" print the same: two classes that read as one (an outside
    audit trained a model on both and every table showed one name twice)."""
    import unicodedata

    root = tmp_path / "forms"
    for form in ("NFC", "NFD"):
        shutil.copytree(cifar20 / "train" / "cat", root / unicodedata.normalize(form, "äutö"))
    with pytest.raises(DataError, match=r"differ only in their Unicode form"):
        find_samples(root)
