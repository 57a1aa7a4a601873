"""tools/record_keys.py: equal keys for the same run, each differing key named for a changed one."""

import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import record_keys  # noqa: E402  (tools/ is not a package)

RUN = ROOT / "tests" / "runs" / "schema1"


def test_a_run_has_the_keys_of_itself(capsys):
    assert record_keys.main([str(RUN), str(RUN)]) == 0
    assert "record keys equal" in capsys.readouterr().out


def test_a_changed_metric_and_shape_are_each_a_differing_key(tmp_path, capsys):
    changed = tmp_path / "changed"
    shutil.copytree(RUN, changed)
    raw = json.loads((changed / "run.json").read_text())
    first = raw["records"][0]
    old_metric, first["metric"] = first["metric"], "throughput"
    raw["records"][1]["shape"] = {"batch_size": 3}
    (changed / "run.json").write_text(json.dumps(raw))
    assert record_keys.main([str(RUN), str(changed)]) == 1
    out = capsys.readouterr().out
    assert f"| {old_metric} |" in out and "| throughput |" in out and '{"batch_size": 3}' in out
    assert "4 key(s) differ" in out
