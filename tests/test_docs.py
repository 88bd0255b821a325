"""The README and docs/ against the code: the Logs table names exactly the tags the scripts log, the quick start stays
short, the 15 DMC tasks are the protocol's, and every relative link points to a file that exists."""
import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
LOGS = ROOT / "docs" / "logs.md"
SCRIPTS = ("sac.py", "td3.py", "mbpo.py", "mbpo_perfect_model.py", "alm.py")
WRITER_CALLS = {"add_scalar", "add_video", "add_image", "add_text", "add_histogram", "add_figure"}


def string_keys(node: ast.AST, owner: str) -> set[str]:
    """The string keys written into the dict named `owner`: `owner["k"] = ...` and `owner.update(k=...)`."""
    keys = set()
    for n in ast.walk(node):
        if isinstance(n, ast.Subscript) and isinstance(n.ctx, ast.Store) and getattr(n.value, "id", None) == owner:
            keys.add(n.slice.value)
        if (isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr == "update"
                and getattr(n.func.value, "id", None) == owner):
            keys.update(k.arg for k in n.keywords)
    return keys


def function(tree: ast.AST, name: str, script: str) -> ast.FunctionDef:
    found = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == name]
    assert found, f"{script}: no function {name}() to read its logged names from; update tests/test_docs.py"
    return found[0]


def timing_names(tree: ast.AST) -> set[str]:
    """The names the script times with `run.timed("env")` or `run.working("model_training", ...)` (none: it logs no
    time/*_frac), logged as time/{name}_frac."""
    return {n.args[0].value for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "attr", None) in ("timed", "working")
            and n.args and isinstance(n.args[0], ast.Constant) and getattr(n.func.value, "id", None) == "run"}


def expand(node: ast.AST, tree: ast.AST, script: str) -> set[str]:
    """The tags a tag expression stands for: a string literal, or an f-string whose placeholder ranges over names the
    script defines (time/{name}_frac over its timings, model/{name} over mbpo.py's train_model stats)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return {node.value}
    assert isinstance(node, ast.JoinedStr), f"{script} line {node.lineno}: a tag that is neither a literal nor an f-string"
    parts = [v.value if isinstance(v, ast.Constant) else None for v in node.values]
    assert parts.count(None) == 1, f"{script} line {node.lineno}: an f-string tag with {parts.count(None)} placeholders"
    i = parts.index(None)
    prefix, suffix = "".join(parts[:i]), "".join(parts[i + 1:])
    if (prefix, suffix) == ("time/", "_frac"):
        return {prefix + name + suffix for name in timing_names(tree)}
    if (prefix, suffix) == ("model/", ""):  # train_model's stats, and the dicts its *_model_errors helpers return into them
        names = string_keys(function(tree, "train_model", script), "stats") | {
            key.value for f in ast.walk(tree) if isinstance(f, ast.FunctionDef) and f.name.endswith("_model_errors")
            for n in ast.walk(f) if isinstance(n, ast.Return) and isinstance(n.value, ast.Dict) for key in n.value.keys}
    else:
        raise AssertionError(f"{script} line {node.lineno}: f-string tag {prefix}{{...}}{suffix} that tests/test_docs.py "
                             "cannot expand; teach expand() its names")
    assert names, f"{script}: no names found for {prefix}{{...}}{suffix}"
    return {prefix + name + suffix for name in names}


def logged_tags(script: str) -> set[str]:
    """Every tag `script` writes: the first argument of its writer calls (add_scalar, add_video, add_text, ...) and the
    keys of its run.log({...}) dicts (the harness's Run.log, whose own add_scalar(name, ...) passes them through)."""
    tree = ast.parse((ROOT / script).read_text())
    passthrough = {id(n) for f in ast.walk(tree) if isinstance(f, ast.FunctionDef) and f.name == "log"
                   for n in ast.walk(f)}
    tags = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or not node.args or id(node) in passthrough:
            continue
        name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", None)
        first = node.args[0]
        if name in WRITER_CALLS:
            tags |= expand(first, tree, script)
        elif name == "log" and getattr(node.func.value, "id", None) in ("run", "self"):
            if isinstance(first, ast.Dict):  # a ** in it must unpack a dict comprehension
                keys = [k for k in first.keys if k is not None]
                for key, value in zip(first.keys, first.values):
                    assert key is not None or isinstance(value, ast.DictComp), f"{script} line {node.lineno}: run.log of **{ast.unparse(value)}: write its keys out"
                    keys += [value.key] if key is None else []
            else:
                assert isinstance(first, ast.DictComp), f"{script} line {node.lineno}: run.log of neither a dict nor a dict comprehension"
                keys = [first.key]
            for key in keys:
                tags |= expand(key, tree, script)
    return tags


def logged() -> dict[str, set[str]]:
    """tag -> the scripts (stems) that log it."""
    by_tag = {}
    for script in SCRIPTS:
        for tag in logged_tags(script):
            by_tag.setdefault(tag, set()).add(script.removesuffix(".py"))
    return by_tag


def cells(line: str) -> list[str]:
    return [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]


def logs_table(text: str) -> tuple[list[list[str]], list[str]]:
    """The rows of the table whose header's first cell is `tag` (it ends at the first line that is not a table row), and
    every other line of the text that starts like a row naming a tag (a row cut off from the table)."""
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("|") and cells(line)[:1] == ["tag"]), None)
    assert start is not None, "no table with a `tag` column"
    end = start + 2
    while end < len(lines) and lines[end].startswith("|"):
        end += 1
    stray = [line for i, line in enumerate(lines) if not start <= i < end and re.match(r"\|\s*`[\w/]+`", line)]
    return [cells(line) for line in lines[start + 2:end]], stray


def row_tags(row: list[str]) -> list[str]:
    return re.findall(r"`([^`]+)`", row[0])


def test_scripts_log_tags_the_test_can_read():
    """The extraction itself: a few tags of each kind (literal, run.log dict, time/ and model/ f-strings)."""
    tags = logged()
    assert {"sac", "td3", "mbpo", "mbpo_perfect_model", "alm"} <= tags["eval/return"]
    assert tags["losses/alpha_loss"] == {"sac", "mbpo", "mbpo_perfect_model"}
    assert tags["time/model_training_frac"] == {"mbpo"} and tags["time/model_error_frac"] == {"mbpo_perfect_model"}
    assert {"model/error_pct_holdout_pooled", "model/reward_error_rel_pct", "model/error_pct_stfl"} <= set(tags)
    assert tags["charts/exploration_noise"] == {"alm"}


def test_logs_table_names_every_logged_tag():
    rows, stray = logs_table(LOGS.read_text())
    listed = {tag for row in rows for tag in row_tags(row)}
    missing = sorted(set(logged()) - listed)
    assert not missing and not stray, (f"logged by the scripts but not in {LOGS.relative_to(ROOT)}'s table: {missing}; "
                                       f"rows cut off from the table (a blank line inside it?): {stray}")


def test_logs_table_names_only_logged_tags_with_their_scripts():
    """Every tag a row names is logged, by exactly the scripts its `scripts` column says (`all`: the five)."""
    rows, _ = logs_table(LOGS.read_text())
    tags, every = logged(), {s.removesuffix(".py") for s in SCRIPTS}
    for row in rows:
        assert row_tags(row), f"a row naming no tag: {row}"
        said = every if row[1] == "all" else {s.strip().strip("`").removesuffix(".py") for s in row[1].split(",")}
        for tag in row_tags(row):
            assert tag in tags, f"{tag} is in the Logs table but no script logs it"
            assert tags[tag] == said, f"{tag}: the table says {sorted(said)}, logged by {sorted(tags[tag])}"


def section(text: str, heading: str) -> list[str]:
    lines = text.splitlines()
    start = lines.index(heading)
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    return lines[start:end]


def test_readme_quick_start_is_short():
    assert len(section(README.read_text(), "## Quick start")) < 60


def test_readme_starts_with_install_run_test():
    """The project's rule, and what .ci/run runs: the first code block installs the requirements and tests with pytest."""
    block = README.read_text().split("```")[1]
    assert "pip install -r requirements.txt" in block and "python " in block
    assert any(line.split("#")[0].strip() == "pytest" for line in block.splitlines())


def test_readme_lists_the_fifteen_dmc_tasks():
    sys.path.insert(0, str(ROOT / "benchmark"))
    from protocol import DMC15

    text = README.read_text()
    assert len(DMC15) == 15
    missing = [t for t in DMC15 if f"`{t.removeprefix('dmc:')}`" not in text]
    assert not missing, f"DMC tasks not listed in README.md: {missing}"


@pytest.mark.parametrize("page", [README, *sorted((ROOT / "docs").glob("*.md"))], ids=lambda p: p.name)
def test_relative_links_point_to_files(page):
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)  # code blocks hold commands, not links
    targets = re.findall(r"\]\(([^)\s]+)\)", text)
    broken = [t for t in targets if not re.match(r"[a-z]+:", t) and not t.startswith("#")
              and not (page.parent / t.split("#")[0]).exists()]
    assert not broken, f"{page.relative_to(ROOT)}: links to missing files: {broken}"


def test_readme_diff_counts_are_what_diff_prints():
    """The scripts table's "`diff a.py b.py` (N lines)": N is the line count of that diff now."""
    claims = re.findall(r"`diff (\w+\.py) (\w+\.py)` \((\d+) lines\)", (ROOT / "README.md").read_text())
    assert len(claims) == 4, claims
    for a, b, count in claims:
        printed = subprocess.run(["diff", str(ROOT / a), str(ROOT / b)], capture_output=True, text=True).stdout
        assert len(printed.splitlines()) == int(count), (a, b, count, len(printed.splitlines()))
