"""Property-based tests of the three readers of files from elsewhere: config.json, basis files (and their metadata)
and the trajectory manifest. Any JSON value or mutation of a valid file either loads to a valid object or raises
the project's one-line error type, never another exception."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from gradflow.errors import GradflowError
from gradflow.manifest import read_manifest
from gradflow.subspace import Basis
from gradflow.trajectory import TrajectoryStore
from subpt.config import TrainConfig
from subpt.errors import SubptError

SETTINGS = settings(
    max_examples=100,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


def one_line(exc: BaseException) -> None:
    """The error is a single non-empty line."""
    text = str(exc)
    assert text.strip() and "\n" not in text.strip(), text


def mutate(data: object, path: list, value: object) -> object:
    """A copy of `data` with the element reached by `path` (keys or indices, taken modulo the sizes) set to `value`,
    or, for an empty path, `value` itself."""
    if not path:
        return value
    out = copy.deepcopy(data)
    node = out
    for i, step in enumerate(path):
        last = i == len(path) - 1
        if isinstance(node, dict) and node:
            key = sorted(node)[step % len(node)]
        elif isinstance(node, list) and node:
            key = step % len(node)
        else:
            return out
        if last or not isinstance(node[key], (dict, list)):
            node[key] = value
            return out
        node = node[key]
    return out


paths = st.lists(st.integers(min_value=0, max_value=50), max_size=5)


# ---------------------------------------------------------------------------------------------- config.json
VALID_CONFIG = {
    **TrainConfig(dataset="world-color-shape-36", shots=2, epochs=2, n_ctx=4).to_dict(),
    "_hash": "0" * 16,
    "_basis_sha256": None,
}


def load_config_text(tmp: Path, text: str) -> TrainConfig | None:
    """TrainConfig.load of a config.json holding `text`, validated; None when it raised the one-line error."""
    path = tmp / "config.json"
    path.write_text(text)
    try:
        cfg = TrainConfig.load(path)
        cfg.validate()
    except SubptError as e:
        one_line(e)
        return None
    return cfg


@SETTINGS
@given(value=json_values)
def test_any_json_value_as_config_loads_or_is_one_subpt_error(tmp_path: Path, value: object) -> None:
    load_config_text(tmp_path, json.dumps(value))


@SETTINGS
@given(key=st.sampled_from(sorted(VALID_CONFIG)), value=json_values)
def test_any_field_of_a_valid_config_set_to_any_value_loads_or_is_one_subpt_error(
    tmp_path: Path, key: str, value: object
) -> None:
    cfg = load_config_text(tmp_path, json.dumps({**VALID_CONFIG, key: value}))
    if cfg is not None:
        cfg.check_types()  # a config that loads has fields of the declared types
        for name in ("lr", "momentum", "weight_decay", "warmup_lr", "nfl_lambda"):
            assert math.isfinite(getattr(cfg, name))


@SETTINGS
@given(cut=st.integers(min_value=0, max_value=2000), junk=st.binary(max_size=8))
def test_a_truncated_or_spliced_config_loads_or_is_one_subpt_error(
    tmp_path: Path, cut: int, junk: bytes
) -> None:
    text = json.dumps(VALID_CONFIG, indent=2).encode()
    (tmp_path / "config.json").write_bytes(text[: cut % (len(text) + 1)] + junk)
    try:
        TrainConfig.load(tmp_path / "config.json")
    except SubptError as e:
        one_line(e)


def test_the_valid_config_loads(tmp_path: Path) -> None:
    assert load_config_text(tmp_path, json.dumps(VALID_CONFIG)) is not None


# ---------------------------------------------------------------------------------------------- basis files
def valid_basis(store: Path | None = None) -> dict:
    """The dict a basis file holds (Basis.to_dict of a rank-2 basis of dim 6 with its metadata, naming `store` as
    the folder of its rows when given)."""
    b = Basis(
        torch.eye(2, 6),
        torch.tensor([2.0, 1.0]),
        torch.zeros(6),
        {
            "source": "grads",
            "window": "epochs:1-2",
            "window_kind": "epochs",
            "window_lo": 1,
            "window_hi": 2,
            "rank": 2,
            "n_ctx": 1,
            "model": "toy",
            **({"store": str(store)} if store else {}),
        },
    )
    return b.to_dict()


tensors = st.one_of(
    st.builds(
        lambda shape, fill: torch.full(shape, fill),
        st.lists(st.integers(min_value=0, max_value=7), max_size=3).map(tuple),
        st.floats(allow_nan=True, allow_infinity=True, width=32),
    ),
    st.builds(lambda n: torch.eye(n, 6), st.integers(min_value=0, max_value=8)),
    st.builds(lambda n: torch.arange(n), st.integers(min_value=0, max_value=8)),
)
basis_values = st.one_of(json_values, tensors)


def load_basis(tmp: Path, obj: object) -> Basis | None:
    """Basis.load of a torch file holding `obj` and the metadata checks the tools run on it; None on the error."""
    from subpt._cli.gradflow_app import _rows_of_basis

    path = tmp / "basis.pt"
    torch.save(obj, path)
    try:
        b = Basis.load(path)
        b.check_compatible(6, {"model": "toy", "n_ctx": 1})
        _rows_of_basis(b)
    except GradflowError as e:
        one_line(e)
        return None
    return b


@SETTINGS
@given(key=st.sampled_from(sorted(valid_basis())), value=basis_values)
def test_any_field_of_a_basis_file_loads_or_is_one_gradflow_error(
    tmp_path: Path, key: str, value: object
) -> None:
    b = load_basis(tmp_path, {**valid_basis(), key: value})
    if b is not None:
        assert b.U.ndim == 2 and b.singular_values.shape == (b.rank,)


@example(key="window_lo", value=float("inf"))
@example(key="store", value="nul\x00byte")
@SETTINGS
@given(
    key=st.sampled_from(
        ["window_lo", "window_hi", "window_kind", "source", "store", "window", "rank", "model"]
    ),
    value=json_values,
)
def test_any_metadata_value_of_a_basis_loads_or_is_one_gradflow_error(
    tmp_path: Path, key: str, value: object
) -> None:
    obj = valid_basis(store=tmp_path)  # an existing folder: the metadata's window is read, not skipped
    obj["metadata"] = {**obj["metadata"], key: value}
    load_basis(tmp_path, obj)


@SETTINGS
@given(value=basis_values)
def test_any_object_as_a_basis_file_loads_or_is_one_gradflow_error(tmp_path: Path, value: object) -> None:
    load_basis(tmp_path, value)


def test_the_valid_basis_loads(tmp_path: Path) -> None:
    assert load_basis(tmp_path, valid_basis()) is not None


# ---------------------------------------------------------------------------------------------- manifest.json
@pytest.fixture(scope="module")
def store_manifest(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """A small valid store (2 chunks per stream) and its manifest."""
    path = tmp_path_factory.mktemp("store") / "trajectory"
    store = TrajectoryStore.create(path, [("ctx", (2, 3))], chunk_rows=2, metadata={"model": "toy"})
    for step in range(4):
        store.append("grads", np.full(6, step, np.float32), step=step, epoch=1 + step // 2)
        store.append("snapshots", np.full(6, -step, np.float32), step=step, epoch=1 + step // 2)
    store.close()
    return path, json.loads((path / "manifest.json").read_text())


def read_crafted_manifest(store: Path, text: str) -> None:
    """Open the store with manifest.json holding `text`: either it reads (and every read method works on it) or a
    one-line GradflowError; the original manifest is put back."""
    mpath = store / "manifest.json"
    original = mpath.read_bytes()
    mpath.write_text(text)
    try:
        read_manifest(store)
        s = TrajectoryStore.open(store)
        for stream in ("grads", "snapshots"):
            assert s.rows(stream).shape == (s.num_rows(stream), s.dim)
            s.scalars(stream)
    except GradflowError as e:
        one_line(e)
    finally:
        mpath.write_bytes(original)


@SETTINGS
@given(path=paths, value=json_values)
def test_any_mutation_of_a_manifest_reads_or_is_one_gradflow_error(
    store_manifest: tuple[Path, dict], path: list, value: object
) -> None:
    store, manifest = store_manifest
    read_crafted_manifest(store, json.dumps(mutate(manifest, path, value)))


@SETTINGS
@given(
    stream=st.sampled_from(["grads", "snapshots"]),
    key=st.sampled_from(["file", "scalars", "rows", "first_step", "last_step", "first_epoch", "last_epoch"]),
    value=st.one_of(
        json_values,
        st.sampled_from(
            [
                "/etc/passwd",
                "../x.npy",
                "grads/../../x",
                "grads/chunk_9.npy",
                "snapshots/chunk_000000.npy",
                "grads/",
            ]
        ),
    ),
)
def test_any_chunk_field_of_a_manifest_reads_or_is_one_gradflow_error(
    store_manifest: tuple[Path, dict], stream: str, key: str, value: object
) -> None:
    store, manifest = store_manifest
    crafted = copy.deepcopy(manifest)
    crafted["streams"][stream]["chunks"][0][key] = value
    read_crafted_manifest(store, json.dumps(crafted))


def test_the_valid_manifest_reads(store_manifest: tuple[Path, dict]) -> None:
    store, manifest = store_manifest
    assert TrajectoryStore.open(store).num_rows("grads") == 4
    assert read_manifest(store)["dim"] == manifest["dim"] == 6
