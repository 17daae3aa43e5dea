"""The README's quick-start example runs as written."""
import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_quick_start_runs(tmp_path, monkeypatch):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    quick_start = blocks[0]
    monkeypatch.chdir(tmp_path)
    namespace = {}
    exec(compile(quick_start.replace("pt.Experiment(", "result = pt.Experiment(", 1), "README.md", "exec"), namespace)
    result = namespace["result"].set_index("name")
    assert list(result.index) == ["raw", "full context", "human rewrite"]
    assert result.loc["human rewrite", "RR"] > result.loc["raw", "RR"]  # rewrites resolve the context
    assert (tmp_path / "idx" / "pt_meta.json").exists()
