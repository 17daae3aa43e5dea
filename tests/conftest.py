"""Test set-up: no network, caches in temp folders, real data from the slices in tests/fixtures (a fresh clone
has them) and, for the tests that need the whole files, from ../shared/data (skipped when it is absent)."""
import os
import tempfile
from pathlib import Path

_TMP = Path(tempfile.mkdtemp(prefix="disco-tests-"))
for var, sub in [("NUMBA_CACHE_DIR", "numba"), ("IR_DATASETS_HOME", "ir_datasets"),
                 ("MPLCONFIGDIR", "mpl"), ("DISCO_CACHE_DIR", "disco-cache")]:
    os.environ[var] = str(_TMP / sub)  # forced: tests never read or write a user's caches
    Path(os.environ[var]).mkdir(parents=True, exist_ok=True)
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["DISCO_OFFLINE"] = "1"  # never try to download dataset files
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
# the fixtures are slices of the official files, so their checksums differ from downloads.json: tests of the
# full files and of the check itself turn it back on
os.environ["DISCO_SKIP_CHECKSUMS"] = "1"

import pytest  # noqa: E402

FIXTURES = Path(__file__).resolve().parent / "fixtures"
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The full official files in ../shared/data; tests that need them are skipped in a clone without it."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"needs the full official files in {SHARED_DATA} (../shared/data beside the repository); "
                    "a fresh clone has only the slices in tests/fixtures")
    return SHARED_DATA


@pytest.fixture(scope="session")
def ikat_data() -> Path:
    """The committed iKAT slice: 4 iKAT 2023 train topics (30 turns), the 46 passages they cite, 2 2024 topics."""
    return FIXTURES / "ikat"


@pytest.fixture(scope="session")
def splade_model():
    """The embedded SPLADE-tiny model, loaded once per test session."""
    from pyterrier_disco.encoders import SpladeModel
    return SpladeModel(device="cpu")


@pytest.fixture(scope="session")
def ikat_passages(ikat_data):
    """The real iKAT 2023 train provenance passages of the slice as a docno/text frame."""
    import json
    import pandas as pd
    rows = []
    with open(ikat_data / "2023_train_topics_psg_text.jsonl") as f:
        for line in f:
            d = json.loads(line)
            rows.append({"docno": f"{d['doc_id']}:{d['passage_id']}", "text": d["passage_text"]})
    return pd.DataFrame(rows)


@pytest.fixture(scope="session")
def ikat_turns(ikat_data):
    """Real iKAT 2023 train turns: qid, utterance (query), resolved_utterance (human rewrite), provenance."""
    import json
    import pandas as pd
    rows = []
    for topic in json.loads((ikat_data / "2023_train_topics.json").read_text()):
        for turn in topic["turns"]:
            rows.append({"qid": f"{topic['number']}_{turn['turn_id']}", "query": turn["utterance"],
                         "human_rewrite": turn["resolved_utterance"],
                         "relevant": list(turn.get("response_provenance", []))})
    return pd.DataFrame(rows)


@pytest.fixture(scope="session")
def ikat_index(tmp_path_factory, splade_model, ikat_passages):
    """A SparseIndex over the iKAT passages encoded with SPLADE-tiny, plus the doc matrix."""
    from pyterrier_disco import SparseIndex
    doc_matrix = splade_model.encode(list(ikat_passages["text"]), batch_size=32)
    index = SparseIndex(tmp_path_factory.mktemp("ikat") / "idx", verbose=False)
    records = [{"docno": d, "toks": t} for d, t in zip(ikat_passages["docno"], splade_model.to_dicts(doc_matrix))]
    index.indexer(vocab=splade_model.vocab_fingerprint).index(records)
    return index, doc_matrix


@pytest.fixture(scope="session")
def ikat_home(ikat_data):
    """``$IR_DATASETS_HOME/ikat`` holding the iKAT slice (2023 train topics and passages, 2024 test topics)."""
    import shutil
    target = Path(os.environ["IR_DATASETS_HOME"]) / "ikat"
    target.mkdir(parents=True, exist_ok=True)
    for f in ikat_data.iterdir():
        if not (target / f.name).exists():
            shutil.copy(f, target / f.name)
    return target


# where each official file lies in ../shared/data, by its folder under $IR_DATASETS_HOME
SHARED_LAYOUT = {"ikat": ["ikat/2023", "ikat/2024"], "trec-cast": ["trec-cast/2021", "trec-cast/2022"],
                 "trec-cast/2019": ["trec-cast/2019"], "trec-cast/2020": ["trec-cast/2020"], "topiocqa": ["topiocqa"]}


def _builtin_cast_paths():
    """ir_datasets' own paths of the built-in CAsT 2019/2020 topics and 2020 qrels (fixed when it was imported)."""
    import ir_datasets
    v2019, v2020 = ir_datasets.load("trec-cast/v1/2019"), ir_datasets.load("trec-cast/v1/2020")
    return [Path(dlc.path(force=False)) for dlc in (v2019.queries_handler()._dlc, v2020.queries_handler()._dlc,
                                                    v2020.qrels_handler()._qrels_dlc)]


@pytest.fixture
def irds_home(tmp_path, monkeypatch):
    """``irds_home("fixtures" | "shared")``: a fresh ``IR_DATASETS_HOME`` holding the fixture slices or the full
    files of ../shared/data (skipped when absent) under their official names; the built-in CAsT 2019/2020 files
    go where ir_datasets looks for them. Checksums are checked for the full files only."""
    import shutil

    def make(source: str) -> Path:
        root = tmp_path / f"irds-{source}"
        if source == "fixtures":
            for folder in ("ikat", "trec-cast", "topiocqa"):
                shutil.copytree(FIXTURES / folder, root / folder)
        else:
            if not SHARED_DATA.is_dir():
                pytest.skip(f"needs the full official files in {SHARED_DATA} (../shared/data)")
            monkeypatch.delenv("DISCO_SKIP_CHECKSUMS", raising=False)
            for folder, sources in SHARED_LAYOUT.items():
                (root / folder).mkdir(parents=True, exist_ok=True)
                for src in sources:
                    for f in (SHARED_DATA / src).iterdir():
                        shutil.copy(f, root / folder / f.name)
        for target in _builtin_cast_paths():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(root / "trec-cast" / target.parent.name / target.name, target)
        monkeypatch.setenv("IR_DATASETS_HOME", str(root))
        monkeypatch.setenv("DISCO_OFFLINE", "1")
        return root
    return make


@pytest.fixture
def home(irds_home):
    """A fresh IR_DATASETS_HOME holding the committed slices of the official files (tests/fixtures)."""
    from pyterrier_disco.datasets import register
    root = irds_home("fixtures")
    register()
    return root
