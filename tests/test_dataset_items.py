"""Every registered dataset, ir_datasets' integration-test style: the counts and the items at positions 0, 9 and
last of its queries, qrels and documents (or the error a missing or unbuildable part gives), on the committed
slices (tests/fixtures) and on the full official files of ../shared/data (skipped when absent).

The expectations in fixtures/expected_items.json were recorded from the loaders and checked by hand against
the files; long texts are kept as ``"<start>…<end> (<n> chars)"``. After a deliberate change, rewrite them with
``DISCO_WRITE_EXPECTED=1 pytest tests/test_dataset_items.py`` and review the diff.
"""
import json
import os
import zipfile
from pathlib import Path

import ir_datasets
import pytest

import pyterrier_disco.datasets as dd
from pyterrier_disco.datasets import ChecksumError, DocsUnavailableError, MissingOfficialFileError

FIXTURES = Path(__file__).parent / "fixtures"
EXPECTED = FIXTURES / "expected_items.json"
PARTS = ("queries", "qrels", "docs")
# parts not read here: the built-in CAsT v1 collection (MS MARCO + CAR) and the CAsT 2019 qrels (not in
# ../shared) would start downloads through ir_datasets
SKIP = {"trec-cast/v1/2019": ("qrels", "docs"), "trec-cast/v1/2020": ("docs",)}
SOURCES = {"fixtures": [i for i in dd.known_ids() if not i.startswith("disco-mini")],
           "shared": [i for i in dd.known_ids() if not i.startswith(("disco-mini", "qrecc"))],
           "package": ["disco-mini/train", "disco-mini/test"]}
ERRORS = (MissingOfficialFileError, DocsUnavailableError, ChecksumError)


def _short(value):
    if isinstance(value, str):
        return value if len(value) <= 80 else f"{value[:50]}…{value[-20:]} ({len(value)} chars)"
    if isinstance(value, (list, tuple)):
        return [_short(v) for v in value]
    return value


def _items(records) -> dict:
    records = list(records)
    out = {"count": len(records)}
    for pos in (0, 9, -1):
        if records and (pos < len(records)):
            out[str(pos)] = _short(list(records[pos]))
    return out


def _part(ds, part):
    try:
        return _items({"queries": ds.queries_iter, "qrels": ds.qrels_iter, "docs": ds.docs_iter}[part]())
    except ERRORS as e:
        return type(e).__name__


def _qrecc_home(home: Path) -> None:
    """The made-up QReCC files as the official archives hold them."""
    (home / "qrecc").mkdir()
    with zipfile.ZipFile(home / "qrecc" / "qrecc_data.zip", "w") as zf:
        for split in ("train", "test"):
            zf.write(FIXTURES / "qrecc" / f"qrecc_{split}.json", f"qrecc_{split}.json")
    with zipfile.ZipFile(home / "qrecc" / "passages.zip", "w") as zf:
        zf.write(FIXTURES / "qrecc" / "passages.jsonl", "collection-paragraph/commoncrawl/part-0.jsonl")


def _observe(ds_id: str) -> dict:
    ds = ir_datasets.load(ds_id)
    try:
        frame = len(dd.conversations(ds_id))
    except ERRORS as e:
        frame = type(e).__name__
    return {"frame": frame, **{p: _part(ds, p) for p in PARTS if p not in SKIP.get(ds_id, ())}}


@pytest.fixture(scope="module")
def expected():
    return json.loads(EXPECTED.read_text(encoding="utf-8")) if EXPECTED.exists() else {}


@pytest.fixture(scope="module")
def recorded():
    out = {}
    yield out
    if os.environ.get("DISCO_WRITE_EXPECTED") and out:
        old = json.loads(EXPECTED.read_text(encoding="utf-8")) if EXPECTED.exists() else {}
        for source, found in out.items():
            old.setdefault(source, {}).update(found)
        EXPECTED.write_text(json.dumps(old, indent=1, ensure_ascii=False, sort_keys=True) + "\n", encoding="utf-8")


@pytest.mark.filterwarnings("ignore:iKAT 2023 documents:UserWarning", "ignore:CAsT 2020 frames:UserWarning")
@pytest.mark.parametrize("source", list(SOURCES))
def test_counts_and_items_0_9_last(source, irds_home, expected, recorded):
    if source != "package":
        home = irds_home(source)
        if source == "fixtures":
            _qrecc_home(home)
    dd.register()
    observed = {ds_id: _observe(ds_id) for ds_id in SOURCES[source]}
    if os.environ.get("DISCO_WRITE_EXPECTED"):
        recorded[source] = observed
        pytest.skip("expectations recorded")
    assert set(expected[source]) == set(observed), "a registered dataset without expectations (or gone)"
    for ds_id, found in observed.items():
        for part, value in found.items():
            assert value == expected[source][ds_id][part], f"{source}: {ds_id} {part}"


def test_the_same_turns_reach_the_frame(irds_home):
    """Where both load, the frame has one row per query record, in the same order."""
    irds_home("fixtures")
    for ds_id in ("ikat/2023/train/topic-passages", "trec-cast/v2/2021", "trec-cast/v3/2022", "ikat/2024/test"):
        queries = [q.query_id for q in ir_datasets.load(ds_id).queries_iter()]
        assert list(dd.conversations(ds_id)["qid"]) == queries, ds_id


def test_expected_items_cover_every_known_id():
    known = set(dd.known_ids())
    assert set(SOURCES["fixtures"]) | set(SOURCES["package"]) == known
    expected = json.loads(EXPECTED.read_text(encoding="utf-8"))
    assert {source: set(ids) for source, ids in SOURCES.items()} == {s: set(v) for s, v in expected.items()}
