"""Test set-up: no network, caches in temp folders, real data from ../shared/data."""
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

import pytest  # noqa: E402

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        raise FileNotFoundError(f"real test data not found at {SHARED_DATA} (expected ../shared/data beside the repository)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def splade_model():
    """The embedded SPLADE-tiny model, loaded once per test session."""
    from pyterrier_disco.encoders import SpladeModel
    return SpladeModel(device="cpu")


@pytest.fixture(scope="session")
def ikat_passages(shared_data):
    """The 194 real iKAT 2023 train provenance passages as a docno/text frame."""
    import json
    import pandas as pd
    rows = []
    with open(shared_data / "ikat" / "2023" / "2023_train_topics_psg_text.jsonl") as f:
        for line in f:
            d = json.loads(line)
            rows.append({"docno": f"{d['doc_id']}:{d['passage_id']}", "text": d["passage_text"]})
    return pd.DataFrame(rows)


@pytest.fixture(scope="session")
def ikat_turns(shared_data):
    """Real iKAT 2023 train turns: qid, utterance (query), resolved_utterance (human rewrite), provenance."""
    import json
    import pandas as pd
    rows = []
    for topic in json.load(open(shared_data / "ikat" / "2023" / "2023_train_topics.json")):
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
def ikat_home(shared_data):
    """``$IR_DATASETS_HOME/ikat`` holding the real iKAT 2023 train files (topics and passages)."""
    import shutil
    target = Path(os.environ["IR_DATASETS_HOME"]) / "ikat"
    target.mkdir(parents=True, exist_ok=True)
    for f in (shared_data / "ikat" / "2023").iterdir():
        if not (target / f.name).exists():
            shutil.copy(f, target / f.name)
    return target
