"""DiSCo students as PyTerrier artifacts: both folder layouts (this project's pt_meta.json and the authors'
plain masked-LM folders), the paper's defaults, hub ids, ``pt.Artifact.load`` and ``to_hf``/``from_hf``.

Everything runs offline: the hub's download and upload are replaced by a local folder, and the released
checkpoints' layout is reproduced by saving the embedded SPLADE-tiny with ``save_pretrained``."""
import contextlib
import json
import re
import shutil
from pathlib import Path

import pandas as pd
import pyterrier as pt
import pytest
import torch
from transformers import AutoModelForMaskedLM, AutoTokenizer

from pyterrier_disco import ConversationFormatter, DiSCo, embedded_model_path
from pyterrier_disco.student import PAPER_DOC_MODEL, student_settings

CONVERSATION = [("what's the weather like today?", "it's sunny."), ("should I wear sunscreen?", "yes, UV is high."),
                ("do I need sunglasses?", ""), ("where can I buy them?", "try the optician nearby.")]
CURRENT = "how much do they cost?"


def card_input(conv, current):
    """The input format of the authors' model cards, written out independently of ConversationFormatter."""
    return " [SEP] ".join([current] + [x for q, a in reversed(conv) for x in (a, q) if x])


def frame():
    history = [t for q, a in CONVERSATION for t in ({"role": "user", "text": q}, {"role": "system", "text": a})]
    return pd.DataFrame({"qid": ["c1_5", "c1_1"], "query": [CURRENT, CONVERSATION[0][0]],
                         "history": [history, []]})


def save_plain(folder: Path) -> Path:
    """A masked-LM folder in the layout of the authors' released students: save_pretrained, no pt_meta.json."""
    source = str(embedded_model_path())
    AutoModelForMaskedLM.from_pretrained(source).save_pretrained(str(folder))
    AutoTokenizer.from_pretrained(source).save_pretrained(str(folder))
    return folder


def save_trained_layout(plain: Path, folder: Path, **meta) -> Path:
    shutil.copytree(plain, folder)
    (folder / "pt_meta.json").write_text(json.dumps({
        "type": "disco_student", "format": "hf", "name": "DiSCo(test)", "doc_model": None, "max_length": 128,
        "formatter": {"include_responses": True, "max_response_tokens": 8, "max_length": 128, "sep": "[SEP]"},
        **meta}))
    return folder


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    return save_plain(tmp_path_factory.mktemp("authors") / "splade-disco-test")


def brute_force_splade(folder, text, max_length):
    """SPLADE of one text straight from transformers: max over tokens of log(1 + relu(logits))."""
    tok = AutoTokenizer.from_pretrained(str(folder))
    mlm = AutoModelForMaskedLM.from_pretrained(str(folder)).eval()
    enc = tok([text], truncation=True, max_length=max_length, return_tensors="pt")
    with torch.no_grad():
        reps = torch.log1p(torch.relu(mlm(**enc).logits)).max(dim=1).values[0]
    vocab = {i: t for t, i in tok.get_vocab().items()}
    return {vocab[int(i)]: float(reps[i]) for i in torch.nonzero(reps).flatten()}


def test_authors_layout_gets_the_papers_defaults(plain):
    assert not (plain / "pt_meta.json").exists()
    settings = student_settings(plain)  # what DiSCo(plain) would load, resolved without loading
    assert settings.doc_model == PAPER_DOC_MODEL == "naver/splade-cocondenser-ensembledistil"
    assert settings.max_length == 256 and settings.meta == {}
    assert settings.formatter.settings() == ConversationFormatter().settings()
    hist = frame()["history"][0]
    assert settings.formatter(CURRENT, hist) == card_input(CONVERSATION, CURRENT)
    overridden = student_settings(plain, doc_model="my/doc-model", max_length=64)
    assert (overridden.doc_model, overridden.max_length, overridden.formatter.max_length) == ("my/doc-model", 64, 64)


def test_authors_layout_encodes_the_card_input(plain):
    student = DiSCo.from_pretrained(plain, doc_model=embedded_model_path())
    assert isinstance(student, pt.Artifact) and student.path == plain and student.meta == {}
    assert student.doc_model.name_or_path == str(embedded_model_path())
    out = student.query_encoder()(frame())
    expected = brute_force_splade(plain, card_input(CONVERSATION, CURRENT), 256)
    got = out["query_toks"][0]
    assert got.keys() == expected.keys()
    assert [got[t] for t in expected] == pytest.approx(list(expected.values()), abs=1e-4)

    short = DiSCo(plain, doc_model=embedded_model_path(), max_length=16)
    assert short.query_model.max_length == 16 and short.formatter.max_length == 16
    assert short.query_encoder()(frame())["query_toks"][0] == pytest.approx(
        brute_force_splade(plain, card_input(CONVERSATION, CURRENT), 16), abs=1e-4)
    no_answers = ConversationFormatter(include_responses=False)
    assert DiSCo(plain, doc_model=embedded_model_path(), formatter=no_answers).formatter is no_answers


def test_hub_id_loads_a_snapshot(plain, monkeypatch):
    import huggingface_hub

    calls = []

    def snapshot_download(repo_id, revision=None, allow_patterns=None):
        calls.append((repo_id, revision, tuple(allow_patterns)))
        return str(plain)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    student = DiSCo.from_pretrained("slupart/splade-disco-topiocqa-mistral", revision="main",
                                    doc_model=embedded_model_path())
    assert student.query_model.name == "slupart/splade-disco-topiocqa-mistral"
    assert len(calls) == 1 and calls[0][:2] == ("slupart/splade-disco-topiocqa-mistral", "main")
    assert "*.safetensors" in calls[0][2] and not any(p.endswith(".bin") for p in calls[0][2])
    with pytest.raises(FileNotFoundError, match="not a folder, nor a hub id"):
        DiSCo.from_pretrained(plain / "missing" / "folder")
    monkeypatch.undo()  # the real hub client, offline in the tests: the error names the student
    with pytest.raises(FileNotFoundError, match="'slupart/splade-disco-human' is neither a folder here nor"):
        DiSCo.from_pretrained("slupart/splade-disco-human")


def test_trained_layout_is_a_pt_artifact(plain, tmp_path):
    folder = save_trained_layout(plain, tmp_path / "student", steps=3)
    student = pt.Artifact.load(str(folder))
    assert type(student) is DiSCo and pt.inspect.artifact_type_format(student) == ("disco_student", "hf")
    assert student.meta["steps"] == 3 and student.query_model.name == "DiSCo(test)"
    assert student.doc_model.source is None  # "doc_model": null is the embedded SPLADE-tiny
    assert student.query_model.max_length == 128 and student.formatter.max_response_tokens == 8
    assert DiSCo.load(str(folder)).meta == student.meta  # the subclass loads it directly too


def test_bad_folders(plain, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="neither pt_meta.json nor"):
        DiSCo(tmp_path / "empty")
    index_like = Path(shutil.copytree(plain, tmp_path / "other"))
    (index_like / "pt_meta.json").write_text(json.dumps({"type": "sparse_index", "format": "numba"}))
    with pytest.raises(ValueError, match="'sparse_index' artifact, not a DiSCo student"):
        DiSCo.from_pretrained(index_like)
    (index_like / "pt_meta.json").write_text('{"type": "disco_student", ')
    with pytest.raises(ValueError, match="pt_meta.json is not valid JSON"):
        DiSCo.from_pretrained(index_like)


@pytest.fixture
def local_hub(tmp_path, monkeypatch):
    """The Hugging Face hub as a local folder: uploads are copied into it, downloads read from it."""
    import huggingface_hub

    root = tmp_path / "hub"
    monkeypatch.setenv("PYTERRIER_HOME", str(tmp_path / "pyterrier-home"))
    monkeypatch.setattr(huggingface_hub, "create_repo", lambda repo, repo_type=None, private=None: None)
    monkeypatch.setattr(huggingface_hub, "create_branch", lambda repo, repo_type=None, branch=None: None)

    def upload_folder(repo_id, folder_path, repo_type=None, revision=None):
        assert repo_type == "dataset"
        shutil.copytree(folder_path, root / repo_id / revision, dirs_exist_ok=True)
        return f"https://huggingface.co/datasets/{repo_id}/tree/{revision}"

    @contextlib.contextmanager
    def download_stream(url, *, expected_sha256=None, headers=None, verbose=True):
        repo, ref, name = re.fullmatch(r"https://huggingface\.co/datasets/(.+)/resolve/([^/]+)/(.+)", url).groups()
        path = root / repo / ref / name
        if not path.exists():
            raise OSError(f"404: {url}")
        with contextlib.ExitStack() as stack:
            fin = stack.enter_context(open(path, "rb"))
            if expected_sha256 is not None:
                fin = stack.enter_context(pt.io.HashReader(fin, expected=expected_sha256))
            yield fin

    monkeypatch.setattr(huggingface_hub, "upload_folder", upload_folder)
    monkeypatch.setattr(pt.io, "download_stream", download_stream)
    return root


def test_to_hf_from_hf_round_trip(plain, tmp_path, local_hub):
    folder = save_trained_layout(plain, tmp_path / "student", steps=7)
    student = pt.Artifact.load(str(folder))
    student.to_hf("someone/disco-student")
    assert (local_hub / "someone/disco-student/main/artifact.tar.lz4").exists()
    back = pt.Artifact.from_hf("someone/disco-student")
    assert type(back) is DiSCo and back.path != student.path and back.meta == student.meta
    a, b = student.query_encoder()(frame()), back.query_encoder()(frame())
    assert list(a["query_toks"]) == list(b["query_toks"])
    assert DiSCo.from_hf("someone/disco-student").meta["steps"] == 7


def test_authors_layout_is_packaged_with_its_settings(plain, tmp_path, local_hub):
    doc_folder = Path(shutil.copytree(plain, tmp_path / "doc-model"))
    student = DiSCo(plain, doc_model=str(doc_folder), max_length=64)
    student.to_hf("someone/authors-student@v1")
    with pytest.raises(ValueError, match="outside its folder: pass it yourself"):  # a package's local path is not
        pt.Artifact.from_hf("someone/authors-student@v1")                       # loaded without being asked for
    back = pt.Artifact.from_hf("someone/authors-student@v1", doc_model=str(doc_folder))
    assert type(back) is DiSCo and back.meta["doc_model"] == str(doc_folder)
    assert back.doc_model.name_or_path == str(doc_folder) and back.query_model.max_length == 64
    assert back.formatter.settings() == student.formatter.settings()
    assert list(back.query_encoder()(frame())["query_toks"]) == list(student.query_encoder()(frame())["query_toks"])
    assert not (plain / "pt_meta.json").exists()  # packaging wrote nothing into the source folder
