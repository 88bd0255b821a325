"""The harness (the run class, the command line, checkpoints, the NaN guard, W&B, videos, Adam, the CUDA graph, the
progress line: the block from `# The harness` to `if __name__`) is copied into every algorithm script so each reads
alone; these copies must not drift. Only `check_args`, each script's own checks of its own flags, may differ."""
import ast

import pytest

from conftest import ROOT

SCRIPTS = ["sac.py", "td3.py", "mbpo.py", "mbpo_perfect_model.py", "alm.py"]
OWN = {"check_args"}  # the one definition each script writes for itself


def plumbing(source: str) -> dict[str, str]:
    """Each top-level statement of the plumbing block by its name (a function's or class's, an assignment's targets),
    as its exact source text, the comments after it included."""
    start, end = source.index("\n# The harness"), source.index("\nif __name__")
    block = source[start:end]
    statements = ast.parse(block).body
    lines = block.splitlines(keepends=True)
    named = {}
    for i, node in enumerate(statements):
        until = statements[i + 1].lineno - 1 if i + 1 < len(statements) else len(lines)
        if hasattr(node, "decorator_list") and node.decorator_list:
            first = node.decorator_list[0].lineno
        else:
            first = node.lineno
        name = getattr(node, "name", None) or ast.unparse(node.targets[0] if isinstance(node, ast.Assign) else node)
        named[name] = "".join(lines[first - 1:until]).rstrip()  # blank lines before the next one are not its text
    return named


def drift(sources: dict[str, str]) -> list[str]:
    """What differs between the scripts' plumbing copies and sac.py's, one phrase each."""
    reference = plumbing(sources["sac.py"])
    found = []
    for script, source in sources.items():
        copy = plumbing(source)
        for name in sorted((set(reference) | set(copy)) - OWN):
            if name not in copy:
                found.append(f"{script} lacks {name}")
            elif name not in reference:
                found.append(f"{script} has {name}, which sac.py has not")
            elif copy[name] != reference[name]:
                found.append(f"{script}'s {name} differs from sac.py's")
    return found


@pytest.fixture(scope="module")
def sources() -> dict[str, str]:
    return {script: (ROOT / script).read_text() for script in SCRIPTS}


def test_the_plumbing_copies_are_identical_but_for_check_args(sources):
    assert len(plumbing(sources["sac.py"])) > 10  # the block is found and split into its definitions
    assert drift(sources) == []


def test_an_edited_copy_is_caught(sources):
    """The check itself: an edit inside one copy of a plumbing function, and a definition only one copy has."""
    edited = dict(sources)
    edited["td3.py"] = sources["td3.py"].replace("def init_per_seed(make, generator_seeds: list[int]) -> tuple:\n",
                                                 "def init_per_seed(make, generator_seeds: list[int]) -> tuple:\n    pass\n", 1)
    assert edited["td3.py"] != sources["td3.py"]
    assert drift(edited) == ["td3.py's init_per_seed differs from sac.py's"]
    edited = dict(sources)
    edited["alm.py"] = sources["alm.py"].replace("\nif __name__", "\ndef extra():\n    pass\n\n\nif __name__", 1)
    assert drift(edited) == ["alm.py has extra, which sac.py has not"]
    edited = dict(sources)  # each script's own check_args is allowed to differ
    edited["mbpo.py"] = sources["mbpo.py"].replace("def check_args(args: Args) -> None:\n",
                                                   "def check_args(args: Args) -> None:\n    pass\n", 1)
    assert drift(edited) == []
