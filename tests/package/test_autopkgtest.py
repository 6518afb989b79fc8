"""The package's autopkgtest, run for real by Debian's autopkgtest in a booted Debian 13.

``debian/tests/control`` has two tests: a smoke command, and ``unit-tests``, which
runs the sans-I/O unit test modules listed in ``debian/tests/unit-tests.modules``
against the installed package. Here Debian 13's own ``autopkgtest`` (the ``null``
runner: the booted container is the testbed) reads that control file, installs the
.deb and each test's Depends from Debian's packages with apt, and runs both, exactly as
Debian's CI would; the test then reads its summary and the pytest output.
"""

from __future__ import annotations

import ast
import re
import shutil
import sys
import tempfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.package.conftest import DIST, deb_version, port_drop_in
from tests.system import BOOT, RootSpec, boot, free_port
from tests.system.deb import source_files
from tests.system.roots import REPO

DEBIAN_TESTS = REPO / "packaging" / "debian" / "tests"
MODULES_FILE = DEBIAN_TESTS / "unit-tests.modules"
SOURCE = "/mnt/source"
OUT = "/var/tmp/autopkgtest-out"

# The testbed: Debian's autopkgtest installed (with dpkg-dev, which it fetches for an
# unbuilt tree otherwise), the unit tests' Depends only in apt's cache, so autopkgtest
# itself installs them (and a missing one fails the test).
AUTOPKGTEST = RootSpec(
    "autopkgtest",
    parent=BOOT,
    packages=("autopkgtest", "dpkg-dev"),
    download=("python3-pytest", "python3-hypothesis", "python3-pytest-asyncio"),
)

ARTIFACTS = REPO / "tests" / "artifacts" / "autopkgtest"

# "test_room.py::test_join[a b] PASSED [ 12%]", as pytest -v prints it (ids may hold spaces).
_PASSED = re.compile(r"^(?P<module>test_\w+)\.py::.* PASSED +\[ *\d+%\]$", re.MULTILINE)
# pytest's closing line, e.g. "======= 365 passed in 2.51s =======".
_CLOSING = re.compile(r"^=+ (?P<counts>.*) in [\d.]+s(?: \([\d:]+\))? =+$", re.MULTILINE)

# What a listed module may import: what the unit test's Depends bring.
_ALLOWED = frozenset(sys.stdlib_module_names) | {"pichat", "pytest", "hypothesis"}


def listed_modules() -> list[str]:
    """The module names in debian/tests/unit-tests.modules, comments and blanks skipped."""
    lines = MODULES_FILE.read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def test_every_listed_unit_module_exists_and_is_pure() -> None:
    """Each module the autopkgtest copies is in tests/ and needs nothing of the source tree.

    It may import only pichat, the standard library, pytest and hypothesis (what the
    test's Depends bring): a helper from tests/ or a daemon started by subprocess would
    fail, or test the tree instead of the installed package.
    """
    modules = listed_modules()
    assert modules, MODULES_FILE.read_text()
    assert len(modules) == len(set(modules)), modules
    for module in modules:
        path = REPO / "tests" / f"{module}.py"
        assert path.is_file(), f"{MODULES_FILE.name} lists {module}, but {path} is missing"
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                roots = {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                assert node.level == 0, f"{module}: relative import"
                roots = {(node.module or "").split(".")[0]}
            else:
                continue
            for root in roots:
                assert root != "subprocess", f"{module} starts processes"
                assert root in _ALLOWED, f"{module} imports {root}"


@pytest.fixture(scope="module")
def source_tree() -> Iterator[Path]:
    """The source package's tree as build-deb.sh lays it out: the working tree, debian/."""
    with tempfile.TemporaryDirectory(prefix="pichat-src.") as tmp:
        tree = Path(tmp) / "pichat"
        for name in source_files():
            if name.startswith("packaging/debian/"):
                continue
            target = tree / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, target)
        shutil.copytree(REPO / "packaging" / "debian", tree / "debian")
        yield tree


@pytest.mark.system
@pytest.mark.timeout(1200)
def test_autopkgtest_passes_and_runs_the_unit_tests(deb: Path, source_tree: Path) -> None:
    """Debian's autopkgtest passes both tests, and unit-tests ran every listed module.

    More than a smoke test: each listed module contributes passing tests, over a
    hundred in all, imported from /usr/lib/python3/dist-packages.
    """
    with boot(AUTOPKGTEST, binds={deb.parent: DIST, source_tree: SOURCE}) as container:
        # The service the package starts must not take port 3000 of the shared network.
        port_drop_in(container, free_port())
        result = container.run(
            ["autopkgtest", "--output-dir", OUT, "--no-built-binaries"]
            + [f"{DIST}/{deb.name}", f"{SOURCE}/", "--", "null"],
            check=False,
            timeout=900,
        )
        log = result.stdout + result.stderr
        assert result.returncode == 0, f"autopkgtest exited {result.returncode}:\n{log}"
        # Kept for a look after the run (tests/artifacts is not tracked).
        shutil.rmtree(ARTIFACTS, ignore_errors=True)
        shutil.copytree(container.path(OUT), ARTIFACTS)
        summary = dict(
            line.split(None, 1) for line in (ARTIFACTS / "summary").read_text().splitlines()
        )
        stdout = (ARTIFACTS / "unit-tests-stdout").read_text()

    assert (ARTIFACTS / "testpkg-version").read_text().split() == ["pichat", deb_version(deb)]
    # The smoke command's name is autopkgtest's (command1); both must pass.
    assert summary.pop("unit-tests") == "PASS", summary
    assert [value.split()[0] for value in summary.values()] == ["PASS"], summary
    assert "from /usr/lib/python3/dist-packages/pichat/__init__.py" in stdout, stdout
    closing = _CLOSING.findall(stdout)
    assert closing, stdout
    counts = {kind: int(n) for n, kind in (part.split() for part in closing[-1].split(", "))}
    passed = Counter(match["module"] for match in _PASSED.finditer(stdout))
    print(f"unit-tests: {counts}, passed per module: {dict(passed)}")
    # An xfail is a known bug a test records; a skip or a warning would hide a problem.
    assert set(counts) <= {"passed", "xfailed"}, closing[-1]
    assert sum(passed.values()) == counts["passed"] > 100, stdout
    assert set(passed) == set(listed_modules()), stdout
