"""benchmark/gpu_check.py --cpu-smoke: every part of the GPU check runs on the CPU, so it cannot rot between the rare
sessions that have a GPU; and the graph-break count of every compiled function is 0."""
import re
import subprocess
import sys

from conftest import ROOT

GPU_CHECK = [sys.executable, str(ROOT / "benchmark" / "gpu_check.py"), "--cpu-smoke"]
COMPILED = {"sac.py `update`", "td3.py `update`", "alm.py `update`", "mbpo_perfect_model.py `update`",
            "mbpo.py `update`", "mbpo.py `model_step`", "mbpo.py `rollout_step`"}


def table(stdout: str) -> dict[str, dict[str, str]]:
    """The check's rows: what -> {column: cell}, from its Markdown table."""
    lines = [line for line in stdout.splitlines() if line.startswith("| ")]
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    return {cells[0]: dict(zip(header[1:], cells[1:]))
            for cells in ([cell.strip() for cell in line.strip("|").split("|")] for line in lines[1:] if "---" not in line)}


def test_gpu_check_smoke_counts_no_graph_break_and_runs_every_part(tmp_path):
    """Compiled == eager is to 1e-5 relative (Dynamo's graphs run by the "eager" backend: measured 0)."""
    out = tmp_path / "check.md"
    result = subprocess.run([*GPU_CHECK, "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert out.read_text() == result.stdout  # the file gets the header and every row too
    assert "torch " in result.stdout.splitlines()[0] and "--cpu-smoke" in result.stdout.splitlines()[1]
    rows = table(result.stdout)
    assert not [what for what in rows if what.split(":")[0] in ("skipped", "stopped", "failed")], rows
    breaks = {what.split(":")[0]: cells["`--compile`"] for what, cells in rows.items() if "graph breaks" in what}
    assert breaks == dict.fromkeys(COMPILED, "0"), breaks
    for script in ("td3.py", "alm.py"):  # with and without the actor; with and without measuring the model
        assert f"{script} `update`: graph breaks (torch._dynamo.explain, 2 argument variants)" in rows
    (difference,) = [cells["`--compile`"] for what, cells in rows.items() if what.startswith("mbpo.py: parameters after 20")]
    absolute, relative = map(float, re.fullmatch(r"abs (\S+), rel (\S+)", difference).groups())
    assert relative <= 1e-5, difference
    rates = [float(cells[column]) for what, cells in rows.items() if "calls/s" in what for column in ("default", "`--compile`")]
    assert len(rates) == 6 and min(rates) > 0, rates
    for what in ("over all of them", "after the first (steady", "1 mbpo.py process", "2 mbpo.py processes at once",
                 "mbpo.py --num-seeds 2", "sac.py --num-seeds 2"):
        (cells,) = [cells for row, cells in rows.items() if what in row]
        assert float(cells["default"]) > 0, (what, cells)
    assert "total" in list(rows)[-1]


def test_gpu_check_skips_what_no_longer_fits_the_budget_and_says_so():
    result = subprocess.run([*GPU_CHECK, "--budget", "1"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = list(table(result.stdout))
    assert all(what.startswith("skipped: ") for what in rows[:-1]) and rows[-1].startswith("total"), rows
    for part in ("sac.py graph breaks", "alm.py graph breaks", "mbpo.py default run", "mbpo.py `--compile` run",
                 "mbpo.py end to end", "2 mbpo.py processes", "mbpo.py --num-seeds 2", "sac.py --num-seeds 2"):
        assert any(part in what for what in rows), (part, rows)
