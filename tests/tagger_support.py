"""Test support for the tagger tests (TAGGERS.md §4, §7): tiny ONNX models built with
the onnx helper API, tiny label files, a fake Hugging Face cache and a dataset of real
image files. Not a test module; imported by tests/test_tagger_*.py."""

from __future__ import annotations

import functools
import json
import tempfile
from pathlib import Path

import numpy as np

RED_TAG, BLUE_TAG = "red background", "blue background"

WD_CSV = """tag_id,name,category,count
1,red_background,0,100
2,blue_background,0,90
3,general,9,0
4,sensitive,9,0
5,^_^,0,50
6,hatsune_miku,4,40
7,1girl,0,1000
"""
WD_LABELS = 7

# schema A: a hole at 4, mixed-case and unknown categories
CL_MAPPING_A = {
    "0": {"tag": "red_background", "category": "General"},
    "1": {"tag": "blue_background", "category": "general"},
    "2": {"tag": "general", "category": "Rating"},
    "3": {"tag": "sensitive", "category": "Rating"},
    "5": {"tag": "hatsune_miku", "category": "Character"},
    "6": {"tag": "masterpiece", "category": "Quality"},
    "7": {"tag": "commentary_request", "category": "Meta"},
    "8": {"tag": "mystery", "category": "Foo"},
}
CL_LABELS = 9
CL_MAPPING_B = {
    "idx_to_tag": {k: v["tag"] for k, v in CL_MAPPING_A.items()},
    "tag_to_category": {v["tag"]: v["category"] for v in CL_MAPPING_A.values()},
}

COMMIT_WD = "a" * 40
COMMIT_CL = "c" * 40


def _finish(nodes, inits, inp_shape, out_shape, name):
    import onnx
    from onnx import TensorProto, helper

    g = helper.make_graph(
        nodes,
        name,
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, inp_shape)],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, out_shape)],
        inits,
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], producer_name="tests")
    m.ir_version = 8
    onnx.checker.check_model(m)
    return m


def _probe(num_tags):
    # output 0 responds to channel 2 (R in BGR), output 1 to channel 0 (B in BGR)
    W = np.zeros((3, num_tags), np.float32)
    W[2, 0] = 8.0
    W[0, 1] = 8.0
    return W, np.full((num_tags,), -4.0, np.float32)


def wd_like(num_tags, size=448, batch="batch_size"):
    from onnx import helper, numpy_helper

    W, b = _probe(num_tags)
    inits = [
        numpy_helper.from_array(W, "W"),
        numpy_helper.from_array(b, "b"),
        numpy_helper.from_array(np.array([255.0], np.float32), "s"),
    ]
    nodes = [
        helper.make_node("ReduceMean", ["input"], ["m"], axes=[1, 2], keepdims=0),
        helper.make_node("Div", ["m", "s"], ["m01"]),
        helper.make_node("MatMul", ["m01", "W"], ["z"]),
        helper.make_node("Add", ["z", "b"], ["logits"]),
        helper.make_node("Sigmoid", ["logits"], ["output"]),
    ]
    return _finish(nodes, inits, [batch, size, size, 3], [batch, num_tags], "wd_like")


def cl_like(num_tags, size=448, batch="batch_size"):
    from onnx import helper, numpy_helper

    W, b = _probe(num_tags)
    inits = [numpy_helper.from_array(W, "W"), numpy_helper.from_array(b, "b")]
    nodes = [
        helper.make_node("ReduceMean", ["input"], ["m"], axes=[2, 3], keepdims=0),
        helper.make_node("MatMul", ["m", "W"], ["z"]),
        helper.make_node("Add", ["z", "b"], ["output"]),
    ]
    return _finish(nodes, inits, [batch, 3, size, size], [batch, num_tags], "cl_like")


@functools.lru_cache(maxsize=None)
def tiny_models() -> dict[str, Path]:
    """Build every tiny model and label file once per test process."""
    import onnx

    root = Path(tempfile.mkdtemp(prefix="sushitui-tiny-models-"))
    out = {}
    for name, model in {
        "wd": wd_like(WD_LABELS),
        "cl": cl_like(CL_LABELS),
        "wd_fixed1": wd_like(WD_LABELS, batch=1),
        "wd_wide": wd_like(WD_LABELS + 3),  # more outputs than labels
        "wd_narrow": wd_like(5),  # fewer outputs than labels
    }.items():
        p = root / f"{name}.onnx"
        onnx.save(model, str(p))
        out[name] = p
    (root / "selected_tags.csv").write_text(WD_CSV, encoding="utf-8")
    (root / "tag_mapping.json").write_text(json.dumps(CL_MAPPING_A), encoding="utf-8")
    (root / "tag_mapping_b.json").write_text(json.dumps(CL_MAPPING_B), encoding="utf-8")
    out["wd_csv"] = root / "selected_tags.csv"
    out["cl_json"] = root / "tag_mapping.json"
    out["cl_json_b"] = root / "tag_mapping_b.json"
    out["root"] = root
    return out


def _snapshot(cache: Path, repo: str, commit: str, files: dict[str, Path]) -> None:
    base = cache / ("models--" + repo.replace("/", "--"))
    (base / "refs").mkdir(parents=True, exist_ok=True)
    (base / "refs" / "main").write_text(commit)  # no trailing newline: read verbatim
    for rel, src in files.items():
        dst = base / "snapshots" / commit / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_bytes(src.read_bytes())


def make_fake_hf_cache(cache: Path) -> Path:
    """TAGGERS.md §4.2 layout for wd-vit-tagger-v3 and cl_tagger 1.02 (1.01 left out on purpose)."""
    m = tiny_models()
    _snapshot(
        cache, "SmilingWolf/wd-vit-tagger-v3", COMMIT_WD, {"model.onnx": m["wd"], "selected_tags.csv": m["wd_csv"]}
    )
    _snapshot(
        cache,
        "cella110n/cl_tagger",
        COMMIT_CL,
        {"cl_tagger_1_02/model.onnx": m["cl"], "cl_tagger_1_02/tag_mapping.json": m["cl_json"]},
    )
    return cache


def solid(path: Path, color, size=(300, 200), mode="RGB", fmt=None):
    from PIL import Image

    img = Image.new(mode, size, color)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, format=fmt)
    return path


def make_dataset(root: Path, images: dict[str, tuple], name: str = "ds"):
    """A Dataset row with one Item per image file written under ``root``.

    ``images``: relative path → (color, size) (PNG/JPEG by suffix); a value of None
    writes a corrupt file instead."""
    import os

    from sushitui.store import Dataset, Item

    root.mkdir(parents=True, exist_ok=True)
    ds = Dataset.create(name=name, root_path=str(root))
    items = []
    for rel, spec in images.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        if spec is None:
            p.write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
        else:
            color, size = spec
            solid(p, color, size, "RGBA" if len(color) == 4 else "RGB")
        st = os.stat(p)
        rel_dir, base = os.path.split(rel)
        stem = os.path.splitext(base)[0]
        items.append(
            Item.create(
                dataset=ds,
                base_name=stem,
                rel_dir=rel_dir,
                group_key=f"{rel_dir}/{stem}",
                image_path=rel,
                image_suffix="",
                file_size=st.st_size,
                mtime_ns=st.st_mtime_ns,
            )
        )
    return ds, items


class CountingRunner:
    """Wraps the real Runner class to count model loads (and, through it, session runs)."""

    instances: list = []

    def __new__(cls, *a, **kw):
        from sushitui.tagger.runner import Runner

        r = Runner(*a, **kw)
        cls.instances.append(r)
        return r
