"""benchmark/gpu_check.py: every part of the GPU check runs on the CPU (--cpu-smoke), so it cannot rot between the rare
sessions that have a GPU; the graph-break count of every compiled function is 0; and one default call's plan fits the
budget of a short GPU lease."""
import re
import subprocess
import sys

from conftest import ROOT

import gpu_check

GPU_CHECK = [sys.executable, str(ROOT / "benchmark" / "gpu_check.py"), "--cpu-smoke"]
COMPILED = {"sac.py `update`", "td3.py `update`", "alm.py `update`", "mbpo_perfect_model.py `update`",
            "mbpo.py `update`", "mbpo.py `model_step`", "mbpo.py `rollout_step`"}


def table(stdout: str) -> dict[str, dict[str, str]]:
    """The check's rows: what -> {column: cell}, from its Markdown table."""
    lines = [line for line in stdout.splitlines() if line.startswith("| ")]
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    return {cells[0]: dict(zip(header[1:], cells[1:]))
            for cells in ([cell.strip() for cell in line.strip("|").split("|")] for line in lines[1:] if "---" not in line)}


def first_row(rows: dict, text: str) -> int:
    """The index of the first row whose `what` holds `text`."""
    return next(i for i, what in enumerate(rows) if text in what)


def test_gpu_check_smoke_counts_no_graph_break_and_runs_every_part_in_order(tmp_path):
    """Compiled == eager is to 1e-5 relative (Dynamo's graphs run by the "eager" backend: measured 0)."""
    out = tmp_path / "check.md"
    result = subprocess.run([*GPU_CHECK, "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert out.read_text() == result.stdout  # the file gets the header and every row too
    header = result.stdout.splitlines()
    assert "torch " in header[0] and "--cpu-smoke" in header[1] and header[2].startswith("plan (priors, s")
    rows = table(result.stdout)
    assert not [what for what in rows if what.split(":")[0] in ("skipped", "stopped", "failed")], rows
    (tests,) = [cells for what, cells in rows.items() if what.startswith(gpu_check.GRAPH_TESTS)]
    assert tests["default"] in ("ok", ""), tests  # "" while tests/test_graphs.py is not in the checkout
    breaks = {what.split(":")[0]: cells["`--compile`"] for what, cells in rows.items() if "graph breaks" in what}
    assert breaks == dict.fromkeys(COMPILED, "0"), breaks
    for script in ("td3.py", "alm.py"):  # with and without the actor; with and without measuring the model
        assert f"{script} `update`: graph breaks (torch._dynamo.explain, 2 argument variants)" in rows
    (difference,) = [cells["`--compile`"] for what, cells in rows.items() if what.startswith("mbpo.py: parameters after")]
    absolute, relative = map(float, re.fullmatch(r"abs (\S+), rel (\S+)", difference).groups())
    assert relative <= 1e-5, difference
    rates = [float(cells[column]) for what, cells in rows.items() if "calls/s" in what for column in ("default", "`--compile`")]
    assert len(rates) == 6 and min(rates) > 0, rates
    parts = ("over all of them", "after the first (steady", "mbpo.py --num-seeds 1", "mbpo.py --num-seeds 2",
             "sac.py --num-seeds 1", "sac.py --num-seeds 2", "2 mbpo.py processes at once")
    for what in parts:
        (cells,) = [cells for row, cells in rows.items() if what in row]
        assert float(cells["default"]) > 0, (what, cells)
    order = [first_row(rows, text) for text in (gpu_check.GRAPH_TESTS, "graph breaks", "calls/s", "over all of them",
                                                "--num-seeds", "processes at once", "total")]
    assert order == sorted(order), order


def test_gpu_check_skips_what_no_longer_fits_the_budget_and_says_so():
    result = subprocess.run([*GPU_CHECK, "--budget", "1"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [what for what in table(result.stdout) if what != f"{gpu_check.GRAPH_TESTS} not found"]
    assert all(what.startswith("skipped: ") for what in rows[:-1]) and rows[-1].startswith("total"), rows
    for part in ("sac.py graph breaks", "alm.py graph breaks", "mbpo.py default run", "mbpo.py `--compile` run",
                 "mbpo.py end to end", "mbpo.py --num-seeds 1", "sac.py --num-seeds 2", "2 mbpo.py processes"):
        assert any(part in what for what in rows), (part, rows)


def test_default_plan_fits_one_short_lease():
    """A GPU session has ~15 minutes of device time, the machine's start included: one default call's priors (this
    process's imports among them) must add up to at most its 480 s budget, so that its first call completes."""
    a = gpu_check.parse([])
    plan = gpu_check.Check(a).plan()
    assert a.budget == 480 and a.parts == ["tests", "compare", "e2e", "seeds"]
    assert sum(seconds for _, seconds in plan) <= a.budget, plan
    assert min(seconds for _, seconds in plan) > 0 and not [what for what, _ in plan if "compile" in what], plan
    for script in ("sac.py", "td3.py", "mbpo.py"):  # update calls/s with and without CUDA graphs
        assert {f"{script} `--no-cuda-graph` run", f"{script} default run", f"{script} calls/s"} <= dict(plan).keys()
    assert {"tests", "mbpo.py end to end, default", "mbpo.py --num-seeds 16", "sac.py --num-seeds 32"} <= dict(plan).keys()


def test_pytest_lines_become_one_outcome_per_test():
    output = """tests/test_graphs.py::test_sac PASSED                              [ 25%]
tests/test_graphs.py::test_mbpo[rollout 3] FAILED                   [ 50%]
tests/test_graphs.py::test_alm SKIPPED (no CUDA)                    [ 75%]
tests/test_graphs.py::test_td3 ERROR                                [100%]
FAILED tests/test_graphs.py::test_mbpo[rollout 3] - AssertionError: 92 of 105 | tensors differ
"""
    assert gpu_check.graph_test_outcomes(output) == [
        ("tests/test_graphs.py::test_sac", "passed", ""),
        ("tests/test_graphs.py::test_mbpo[rollout 3]", "failed", "AssertionError: 92 of 105 / tensors differ"),
        ("tests/test_graphs.py::test_alm", "skipped", "no CUDA"), ("tests/test_graphs.py::test_td3", "error", "")]
