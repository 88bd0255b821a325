"""benchmark/gpu_check.py --cpu-smoke: every code path of the GPU check runs on the CPU, so it cannot rot between the
rare sessions that have a GPU."""
import re
import subprocess
import sys

from conftest import ROOT


def test_gpu_check_cpu_smoke_prints_every_row_and_equal_parameters():
    result = subprocess.run([sys.executable, str(ROOT / "benchmark" / "gpu_check.py"), "--cpu-smoke"], cwd=ROOT,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    rows = [line for line in result.stdout.splitlines() if line.startswith("| ") and "---" not in line][1:]
    names = [row.split(" | ")[0][2:] for row in rows]
    for script in ("sac.py", "td3.py", "mbpo.py", "alm.py"):
        assert f"{script} update" in names
    assert {"mbpo.py model step", "mbpo.py end to end, Hopper-v5, env steps/s",
            "mbpo.py end to end, dmc:hopper-stand, env steps/s"} <= set(names)
    assert any(name.startswith("2 mbpo.py process(es)") for name in names)
    differences = [float(row.split(" | ")[2]) for row in rows if "max abs parameter difference" in row]
    assert len(differences) == 4 and max(differences) <= 1e-5, differences
    assert all(float(x) > 0 for row in rows for x in re.findall(r"\| (\d+\.\d+) \|", row) if "difference" not in row)
