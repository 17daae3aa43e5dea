"""Official files: downloads.json (size + sha256 of every file we have a reference copy of), checks of local
copies and of downloads (a local HTTP server stands in for the official host)."""
import hashlib
import http.server
import json
import threading

import pytest

import pyterrier_disco.datasets as dd
from pyterrier_disco.datasets import ChecksumError, MissingOfficialFileError
from pyterrier_disco.datasets._files import DOWNLOADS, OfficialFile, downloads


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_every_downloads_entry_has_urls_or_an_archive_and_hashes_where_known():
    entries = downloads()
    assert set(entries) == {"ikat", "trec-cast", "trec-cast/2019", "topiocqa", "qrecc"}
    for folder, files in entries.items():
        for name, entry in files.items():
            assert entry["urls"] or "member of" in entry.get("note", ""), f"{folder}/{name}: no source"
            assert all(u.startswith("https://") for u in entry["urls"])
            known = entry.get("sha256") or entry.get("md5")
            assert bool(known) == (entry["size"] is not None), f"{folder}/{name}: size and hash go together"


# the files in ../shared/data that the loaders read themselves, by the folder downloads.json files them under
# (the CAsT 2019/2020 topics and 2020 qrels go through ir_datasets' built-in loaders, which check their md5)
PINNED = {"ikat/2023/2023_train_topics.json": "ikat", "ikat/2023/2023_train_topics_psg_text.jsonl": "ikat",
          "ikat/2024/2024_test_topics.json": "ikat",
          "trec-cast/2019/evaluation_topics_annotated_resolved_v1.0.tsv": "trec-cast/2019",
          "trec-cast/2021/2021_manual_evaluation_topics_v1.0.json": "trec-cast",
          "trec-cast/2022/2022_evaluation_topics_flattened_duplicated_v1.0.json": "trec-cast",
          "trec-cast/2022/cast2022.qrel": "trec-cast"}


def test_downloads_json_matches_the_official_copies(shared_data):
    """Each official file of ../shared/data that a loader reads is in downloads.json with the size and sha256
    computed here."""
    for rel, folder in PINNED.items():
        data = (shared_data / rel).read_bytes()
        entry = downloads()[folder][rel.rsplit("/", 1)[1]]
        assert (entry["size"], entry["sha256"]) == (len(data), _sha256(data)), rel
    dev = (shared_data / "topiocqa/topiocqa_dev.json").read_bytes()  # two releases: not pinned, this one noted
    note = downloads()["topiocqa"]["topiocqa_dev.json"]["note"]
    assert _sha256(dev) in note and str(len(dev)) in note


def test_a_local_copy_that_is_not_the_official_file_is_refused(irds_home, monkeypatch):
    home = irds_home("fixtures")  # slices: smaller than the official files
    monkeypatch.delenv("DISCO_SKIP_CHECKSUMS")
    with pytest.raises(ChecksumError) as e:
        dd.conversations("ikat/2023/train")
    official = downloads()["ikat"]["2023_train_topics.json"]["size"]
    actual = (home / "ikat/2023_train_topics.json").stat().st_size
    msg = str(e.value)
    assert "2023_train_topics.json" in msg and f"size expected {official}, got {actual}" in msg
    assert "DISCO_SKIP_CHECKSUMS" in msg
    monkeypatch.setenv("DISCO_SKIP_CHECKSUMS", "1")
    assert len(dd.conversations("ikat/2023/train")) > 0


def test_same_size_other_bytes_fail_the_sha256(tmp_path, monkeypatch):
    monkeypatch.delenv("DISCO_SKIP_CHECKSUMS")
    monkeypatch.setenv("IR_DATASETS_HOME", str(tmp_path))
    good = b'{"official": true}\n'
    f = OfficialFile("x", "file.json", urls=[], expected={"size": len(good), "sha256": _sha256(good)})
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "file.json").write_bytes(good)
    assert f.load_json() == {"official": True}
    bad = b'{"official": 0000}\n'  # same size
    (tmp_path / "x" / "file.json").write_bytes(bad)
    with pytest.raises(ChecksumError, match=f"sha256 expected {_sha256(good)}, got {_sha256(bad)}"):
        f.path()


@pytest.fixture
def server(tmp_path):
    """A local HTTP server over tmp_path/served (the official host, for the download path)."""
    served = tmp_path / "served"
    served.mkdir()

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(served), **kwargs)

        def log_message(self, *args):
            pass
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield served, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_download_is_checked_before_it_lands(server, tmp_path, monkeypatch):
    served, url = server
    monkeypatch.delenv("DISCO_SKIP_CHECKSUMS")
    monkeypatch.delenv("DISCO_OFFLINE")
    monkeypatch.setenv("IR_DATASETS_HOME", str(tmp_path / "home"))
    data = json.dumps([{"number": "1", "turns": []}]).encode()
    (served / "topics.json").write_bytes(data)
    expected = {"size": len(data), "sha256": _sha256(data)}
    # the first source is down, the second serves the file: downloaded, checked, renamed into place
    f = OfficialFile("ikat", "topics.json", urls=[f"{url}/missing.json", f"{url}/topics.json"], expected=expected)
    assert f.path().read_bytes() == data and f.load_json() == [{"number": "1", "turns": []}]
    # a source serving other bytes: a clear error, and nothing (no temporary file either) left behind
    wrong = OfficialFile("ikat", "other.json", urls=[f"{url}/topics.json"],
                         expected={"size": len(data), "sha256": "0" * 64})
    with pytest.raises(ChecksumError) as e:
        wrong.path()
    assert "other.json" in str(e.value) and "download from" in str(e.value) and "0" * 64 in str(e.value)
    assert sorted(p.name for p in (tmp_path / "home" / "ikat").iterdir()) == ["topics.json"]
    # offline: no attempt, the error says so
    monkeypatch.setenv("DISCO_OFFLINE", "1")
    with pytest.raises(MissingOfficialFileError, match="DISCO_OFFLINE"):
        OfficialFile("ikat", "third.json", urls=[f"{url}/topics.json"], expected=expected).path()


def test_every_official_file_of_the_loaders_is_described():
    assert DOWNLOADS.name == "downloads.json"
    with pytest.raises(KeyError, match="not described"):
        OfficialFile("ikat", "2099_train_topics.json")
