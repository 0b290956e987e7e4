"""What a loaded file says about itself that parity cannot catch.

Parity compares numbers within the precision's tolerance, so an fp32 ONNX file in the int8 or
fp16 slot (a copy, a swap, another tool's output) passes as int8 or fp16 and is timed as such;
and an ONNX file's metadata_props (how a consumer without the manifest feeds it) can be wrong
while its numbers are right. verify and bench both fail such a cell, by these checks.
"""

from __future__ import annotations

import functools
import json
import math
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from alexbench.precision import Precision

if TYPE_CHECKING:
    import onnx

    from alexbench.runtimes import ModelBundle
    from alexbench.runtimes.base import Runtime

# The element types a precision's weights are stored in (ONNX's names), for the ONNX variants.
VARIANT_WEIGHT_TYPES = {
    Precision.FP16: frozenset({"FLOAT16"}),
    Precision.INT8: frozenset({"INT8", "UINT8"}),
}
# A variant holds most of its weight values in its type; scales, zero points and int32 biases
# (a QDQ file) or a few fp32 scalars (an fp16 file) are the rest. An fp32 file holds none.
MIN_VARIANT_SHARE = 0.5


def weight_values(model: onnx.ModelProto) -> dict[str, int]:
    """How many weight values (initializer elements) an ONNX model stores per element type."""
    import onnx

    counts: dict[str, int] = {}
    for t in model.graph.initializer:
        name = onnx.TensorProto.DataType.Name(t.data_type)
        counts[name] = counts.get(name, 0) + math.prod(t.dims)
    return dict(sorted(counts.items()))


def onnx_weight_values(path: Path) -> dict[str, int]:
    """`weight_values` of a file, read without its external data (the sizes are in the header)."""
    import onnx

    return weight_values(onnx.load(str(path), load_external_data=False))


def precision_mismatch(values: dict[str, int] | None, precision: Precision) -> str:
    """Why an ONNX file's weights are not stored in `precision`'s type, or "" (no record, or
    a precision served by the fp32 file)."""
    wanted = VARIANT_WEIGHT_TYPES.get(precision)
    if not values or wanted is None:
        return ""
    total = sum(values.values())
    share = sum(n for t, n in values.items() if t in wanted) / total if total else 0.0
    if share >= MIN_VARIANT_SHARE:
        return ""
    stored = ", ".join(f"{t} {n / total:.0%}" for t, n in values.items() if n >= total / 200)
    return (
        f"the {precision.value} file is not an {precision.value} model: {share:.0%} of its weight "
        f"values are {'/'.join(sorted(wanted))} ({stored})"
    )


def metadata_mismatch(
    declared: dict[str, str] | None, bundle: ModelBundle, what: str = "metadata_props"
) -> str:
    """What a file's metadata (`what`: an ONNX file's metadata_props, a torch file's
    alexbench.json entry) says about its inputs and outputs that the model does not, or lacks
    (a consumer without the manifest normalises by them), or "". None: no file (nothing to
    check); {}: a file without them (stripped, or older than them), all missing."""
    if declared is None:
        return ""
    from alexbench.exporters import onnx_metadata  # exporters import torch.onnx: only here

    expected = onnx_metadata(bundle.loaded)
    # A file with some of the props but not all lost the others (an edit, another tool's
    # rewrite): a consumer that falls back to defaults (ImageNet's mean/std) computes otherwise.
    missing = [k for k in expected if k not in declared]
    wrong = [k for k, v in declared.items() if k in expected and v != expected[k]]
    parts = [f"{what} {', '.join(missing)} missing"] if missing else []
    if not declared:
        parts = [f"{what} missing (stripped, or older than them: re-export it)"]
    if wrong:
        first = wrong[0]
        parts.append(
            f"{what} {', '.join(wrong)} differ from the model "
            f"({first}: file {declared[first]!r}, model {expected[first]!r})"
        )
    return "; ".join(parts)


def file_problems(
    session_info: dict[str, Any], bundle: ModelBundle, precision: Precision, runtime: Runtime
) -> str:
    """Everything wrong with the file `runtime` loaded at `precision`, from the session's
    `info()` and the file itself, or "". The metadata is read from the file, whichever runtime
    ran it: read from ONNX Runtime's session alone, OpenVINO passed the ONNX file ONNX Runtime
    failed, and no torch file's was checked (an outside audit)."""
    fmt = runtime.artifact_for(precision)
    path = bundle.artifacts.get(fmt) if fmt is not None else None
    try:
        declared, what = (None, "") if path is None else declared_metadata(path)
    except Exception as e:  # gone or unreadable since the session loaded it
        first = (str(e).strip().splitlines() or [""])[0]
        return f"cannot read its metadata from {path}: {type(e).__name__}: {first}"
    parts = [
        precision_mismatch(session_info.get("onnx_weight_values"), precision),
        metadata_mismatch(declared, bundle, what),
    ]
    return "; ".join(p for p in parts if p)


def declared_metadata(path: Path) -> tuple[dict[str, str], str]:
    """The alexbench.* metadata a file carries, and what it is called in that file: an ONNX
    file's metadata_props, a torch file's `TORCH_METADATA` archive entry ({} when absent or
    unreadable). Read once per file version: bench checks every cell of a file."""
    st = path.stat()
    return _declared(str(path), st.st_ino, st.st_mtime_ns, st.st_ctime_ns, st.st_size)


@functools.lru_cache(maxsize=16)
def _declared(path: str, *_version: int) -> tuple[dict[str, str], str]:
    from alexbench.exporters.base import TORCH_METADATA

    if path.endswith(".onnx"):
        import onnx

        model = onnx.load(path, load_external_data=False)
        props = {p.key: p.value for p in model.metadata_props if p.key.startswith("alexbench.")}
        return props, "metadata_props"
    what = f"metadata ({TORCH_METADATA})"
    try:
        with zipfile.ZipFile(path) as archive:
            name = next(
                (n for n in archive.namelist() if n.endswith(f"/extra/{TORCH_METADATA}")), None
            )
            doc = json.loads(archive.read(name)) if name is not None else {}
    except (zipfile.BadZipFile, ValueError, UnicodeDecodeError):
        return {}, what  # a file torch loaded is a zip: an entry that is not JSON says nothing
    if not isinstance(doc, dict):
        return {}, what
    return {k: v for k, v in doc.items() if isinstance(v, str) and k.startswith("alexbench.")}, what
