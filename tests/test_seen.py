"""Training images recognised by their bytes (alexbench.training.seen)."""

from pathlib import Path

from alexbench.training.seen import trained_overlap, training_sample


def _files(folder: Path, n: int, start: int = 0) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(start, start + n):
        p = folder / f"{i}.bin"
        p.write_bytes(f"image {i}".encode())
        paths.append(str(p))
    return paths


def test_a_sample_finds_the_trained_on_share_of_a_scored_set(tmp_path):
    train = _files(tmp_path / "train", 400)
    record = training_sample(train, size=100)
    assert record["images"] == 400 and len(record["sample"]) == 100
    # Renamed copies of 200 training files beside 200 new ones: about half trained on.
    mixed = _files(tmp_path / "other", 200, start=400)
    for i, p in enumerate(train[:200]):
        copy = tmp_path / "mixed" / f"renamed-{i}.jpg"
        copy.parent.mkdir(exist_ok=True)
        copy.write_bytes(Path(p).read_bytes())
        mixed.append(str(copy))
    overlap = trained_overlap(mixed, record)
    assert overlap is not None and overlap.checked == 400 and overlap.found > 20
    assert 0.3 < overlap.share < 0.7
    assert trained_overlap(mixed[:200], record) is None  # none of these was trained on
    assert trained_overlap(mixed, None) is None and trained_overlap(mixed, {"sample": []}) is None


def test_a_duplicate_or_two_is_not_called_a_trained_on_test_set(tmp_path):
    train = _files(tmp_path / "train", 400)
    record = training_sample(train, size=400)
    scored = _files(tmp_path / "test", 300, start=1000)
    dup = tmp_path / "test" / "dup.jpg"
    dup.write_bytes(Path(train[7]).read_bytes())
    overlap = trained_overlap([*scored, str(dup)], record)
    assert overlap is not None and overlap.found == 1 and not overlap.trained_on
    assert "duplicates across the splits?" in overlap.describe()
