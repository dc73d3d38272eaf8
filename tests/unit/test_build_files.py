"""The Lambda build inputs agree with the development lock and with template.yaml: what
`make build` installs is what the tests ran against, complete, and each makefile-built
resource has its build target. No network, no build: metadata of the installed .venv only.
"""

from __future__ import annotations

import ast
import re
import sys
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from pitcrew.local.template import load_template

REPO = Path(__file__).resolve().parents[2]
DEV_LOCK = REPO / "requirements" / "dev.txt"
DEPS = REPO / "layers" / "deps" / "requirements.txt"
KUBERNETES = REPO / "layers" / "kubernetes" / "requirements.txt"
# Only kubernetes.aio imports these, and layers/kubernetes/Makefile removes that package.
KUBERNETES_ASYNCIO_ONLY = {"aiohttp", "aiohttp-retry"}
# The environment of Lambda's python3.11 runtime, for dependency markers.
LAMBDA = {**default_environment(), "python_version": "3.11", "sys_platform": "linux"}
LAMBDA.update(platform_system="Linux", platform_machine="x86_64", implementation_name="cpython")


def pins(path: Path) -> dict[str, str]:
    """Canonical name -> version of each ``name==version`` line."""
    found = {}
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.split("#", 1)[0].strip()
        if line:
            requirement = Requirement(line)
            (spec,) = requirement.specifier
            assert spec.operator == "==", f"{path.name}: {line!r} is not pinned with =="
            found[canonicalize_name(requirement.name)] = spec.version
    return found


def runtime_requirements(name: str) -> Iterator[str]:
    """The canonical names ``name`` requires in Lambda (no extras), from .venv's metadata."""
    for text in metadata.requires(name) or []:
        requirement = Requirement(text)
        if requirement.marker is None or requirement.marker.evaluate({**LAMBDA, "extra": ""}):
            yield canonicalize_name(requirement.name)


def build_requirements() -> list[Path]:
    return sorted(
        [*REPO.glob("layers/*/requirements.txt"), *REPO.glob("functions/*/requirements.txt")]
    )


@pytest.mark.parametrize("path", build_requirements(), ids=lambda p: str(p.relative_to(REPO)))
def test_build_pins_are_the_dev_lock_versions(path: Path) -> None:
    dev = pins(DEV_LOCK)
    for name, version in pins(path).items():
        assert dev.get(name) == version, (
            f"{name}=={version}: requirements/dev.txt has {dev.get(name)}"
        )


def test_deps_layer_is_its_own_complete_closure() -> None:
    deps = pins(DEPS)
    for name in deps:
        missing = set(runtime_requirements(name)) - set(deps)
        assert not missing, f"{name} needs {sorted(missing)}, which the layer does not pin"


def test_kubernetes_layer_with_deps_layer_is_a_complete_closure_without_duplicates() -> None:
    deps, kubernetes = pins(DEPS), pins(KUBERNETES)
    assert not set(deps) & set(kubernetes), "installed --no-deps: one copy, in DepsLayer"
    both = set(deps) | set(kubernetes)
    for name in kubernetes:
        missing = set(runtime_requirements(name)) - both - KUBERNETES_ASYNCIO_ONLY
        assert not missing, f"{name} needs {sorted(missing)}, which neither layer pins"


def test_what_the_asyncio_client_alone_needs_is_left_out_for_a_reason() -> None:
    # If kubernetes stops requiring these (or starts using them outside kubernetes.aio),
    # the exception above must go.
    assert set(runtime_requirements("kubernetes")) >= KUBERNETES_ASYNCIO_ONLY
    package = Path(metadata.distribution("kubernetes").locate_file("kubernetes"))
    imports_asyncio_libraries = re.compile(r"^\s*(from|import)\s+aiohttp", re.MULTILINE)
    for source in package.rglob("*.py"):
        if source.relative_to(package).parts[0] != "aio":
            assert not imports_asyncio_libraries.search(source.read_text(encoding="utf-8")), source


def third_party_imports(package: Path) -> Iterator[tuple[Path, str]]:
    for source in package.rglob("*.py"):
        for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules = [node.module]
            else:
                continue
            for module in modules:
                top = module.split(".")[0]
                if top != "pitcrew" and top not in sys.stdlib_module_names:
                    yield source, top


def runs_only_on_a_workstation(source: Path, shared: Path) -> bool:
    """pitcrew.local (the local runtime: moto, the emulator) and the command line modules
    (``cli.py``: rich tables) are never imported in Lambda."""
    relative = source.relative_to(shared)
    return relative.parts[:1] == ("local",) or relative.name == "cli.py"


def test_shared_code_imports_only_what_a_layer_or_function_build_installs() -> None:
    installed = {name for path in build_requirements() for name in pins(path)}
    distributions = metadata.packages_distributions()
    shared = REPO / "shared" / "pitcrew"
    for source, top in third_party_imports(shared):
        if runs_only_on_a_workstation(source, shared):
            continue
        providers = {canonicalize_name(d) for d in distributions.get(top, [])}
        assert providers & installed, (
            f"{source.relative_to(REPO)} imports {top}, which no layers/*/requirements.txt or "
            f"functions/*/requirements.txt installs: Lambda would not find it"
        )


def test_no_lambda_code_imports_the_workstation_only_modules() -> None:
    shared = REPO / "shared" / "pitcrew"
    workstation_only = re.compile(r"^\s*(from|import)\s+pitcrew(\.\w+)*\.(cli|local)\b", re.M)
    sources = [*shared.rglob("*.py"), *(REPO / "functions").rglob("*.py")]
    for source in sources:
        if source.is_relative_to(shared) and runs_only_on_a_workstation(source, shared):
            continue
        text = source.read_text(encoding="utf-8")
        assert not workstation_only.search(text), f"{source.relative_to(REPO)}"


def makefile_built() -> list[tuple[str, Path]]:
    template = load_template(REPO / "template.yaml")
    built = []
    for lid, resource in template.resources.items():
        if resource.metadata.get("BuildMethod") == "makefile":
            uri = resource.properties.get("CodeUri") or resource.properties.get("ContentUri")
            built.append((lid, REPO / str(uri)))
    return built


@pytest.mark.parametrize(("logical_id", "directory"), makefile_built(), ids=str)
def test_each_makefile_built_resource_has_its_build_target(
    logical_id: str, directory: Path
) -> None:
    makefile = directory / "Makefile"
    assert makefile.is_file(), f"{logical_id}: BuildMethod makefile needs {makefile}"
    targets = re.findall(r"^([\w-]+):", makefile.read_text(encoding="utf-8"), re.MULTILINE)
    assert f"build-{logical_id}" in targets, f"{makefile}: no build-{logical_id} target"
