"""The ``disco`` command line: help texts, the PISA backend, one-line errors."""
import pytest

from pyterrier_disco.cli import build_parser, main


def test_every_command_and_option_has_help(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    listed = capsys.readouterr().out
    for command in ("index", "teacher-run", "train", "evaluate", "demo"):
        assert command in listed
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    for name, parser in sub.choices.items():
        for action in parser._actions:
            if action.dest != "help":
                assert action.help, f"disco {name} {action.option_strings} has no help text"


def test_index_with_the_pisa_backend_and_clear_errors(tmp_path, capsys):
    out = tmp_path / "pisa"
    assert main(["index", "--dataset", "disco-mini/test", "--out", str(out), "--backend", "pisa"]) == 0
    import pyterrier_disco as disco
    from pyterrier_disco.index import PisaBackend, open_index

    index = open_index(out, verbose=False)
    assert isinstance(index, PisaBackend)
    topics = disco.conversations("disco-mini/test").head(3)
    res = (disco.rewrite.Column("human_rewrite") >> disco.Splade().query_encoder() >> index.retriever(10))(topics)
    assert set(res["qid"]) == set(topics["qid"]) and res.groupby("qid").size().max() == 10
    assert main(["index", "--dataset", "disco-mini/test", "--out", str(out), "--backend", "pisa"]) == 2
    assert "overwrite" in capsys.readouterr().err
    assert main(["index", "--dataset", "disco-mini/test", "--out", str(out), "--backend", "pisa", "--overwrite"]) == 0
    capsys.readouterr()
    # a corrupt numba index: one line naming the file, not a traceback
    numba_out = tmp_path / "numba"
    assert main(["index", "--dataset", "disco-mini/test", "--out", str(numba_out)]) == 0
    (numba_out / "weights.npy").write_bytes(b"not an array")
    capsys.readouterr()
    code = main(["teacher-run", "--dataset", "disco-mini/test", "--index", str(numba_out), "--out",
                 str(tmp_path / "run.parquet"), "--limit", "2"])
    err = capsys.readouterr().err
    assert code == 2 and "weights.npy" in err and "Traceback" not in err
    assert not (tmp_path / "run.parquet").exists()


def test_train_options_come_from_the_config_and_take_none_where_optional():
    from pyterrier_disco.cli import _config_from_args
    from pyterrier_disco.train import TrainConfig

    base = ["train", "--dataset", "d", "--teacher-run", "r.parquet", "--out", "o"]
    defaults = _config_from_args(build_parser().parse_args(base), TrainConfig)
    assert defaults == TrainConfig()
    args = build_parser().parse_args(base + ["--utterance-weight", "none", "--loss", "disco",
                                             "--max-response-tokens", "32", "--freeze-embeddings", "no"])
    config = _config_from_args(args, TrainConfig)
    assert (config.utterance_weight, config.loss, config.max_response_tokens, config.freeze_embeddings) == \
        (None, "disco", 32, False)
    with pytest.raises(SystemExit):
        build_parser().parse_args(base + ["--utterance-weight", "heavy"])
