"""Cold-start cost of each function: how long a fresh Python process takes to import its
handler module, as a ratio to a fresh process that imports only ``boto3`` and
``aws_lambda_powertools`` (the floor every function pays). Target: a ratio of at most 1.3.

Usage: ``.venv/bin/python bench/coldstart.py [--runs N] [--explain] [--built]``
(``make bench`` runs it plain). The last line is ``coldstart worst ratio X.XX (function)``.

- By default the processes run in the development environment (``.venv``), with the
  function's folder as the working directory, as ``python -c "import app"``.
- ``--built`` measures the ``make build`` artifacts instead, as Lambda would load them: an
  isolated interpreter (``-I -S -B``: no site-packages, no bytecode writes, as in a
  read-only ``/opt``) whose path is the function's build directory, then its layers.
- ``--explain`` adds, per function, what it imports beyond the baseline and which import
  pulled each package in (``python -X importtime``): what to make lazy.

Each function's run sits between two baseline runs and is compared with their mean; the
ratio is the median of those ratios (this machine's speed drifts too much for medians taken
seconds apart). A
process is timed from its start to the end of its imports, not to its exit: Lambda never
tears the interpreter down at the end of a cold start. The default is 15 runs of each.

The processes get a Lambda-like environment (the function's template variables, the
``AWS_LAMBDA_*`` / ``LAMBDA_TASK_ROOT`` variables, so Powertools' Tracer is active as with
``Tracing: Active``) but cannot reach AWS: the configuration is the local file, the
credentials are fake and every AWS endpoint is a closed port on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
TEMPLATE = REPO / "template.yaml"
BUILD_DIR = REPO / ".aws-sam" / "build"
LOCAL_CONFIG = REPO / "infra" / "local" / "pitcrew.yaml"
TARGET_RATIO = 1.3
BASELINE = "baseline"
BASELINE_IMPORT = "import boto3, aws_lambda_powertools"
FUNCTION_TYPE = "AWS::Serverless::Function"
LAYER_TYPE = "AWS::Serverless::LayerVersion"
# An isolated interpreter that sees only the standard library and the paths it is given.
ISOLATED = ("-I", "-S", "-B")


@dataclass(frozen=True)
class Function:
    """A function of the template, as far as the benchmarks care."""

    logical_id: str
    name: str  # its folder (functions/<name>/), or its build directory's name
    code_dir: Path
    handler: str  # module.attribute
    layers: tuple[str, ...]  # logical ids of its layers, Globals' first
    environment: Mapping[str, str]  # its variables; what only a stack resolves, stand-ins
    events: Mapping[str, Any]

    @property
    def module(self) -> str:
        return self.handler.rpartition(".")[0] or "app"


@dataclass(frozen=True)
class Stack:
    """The functions and layers of one template (the source one, or a built one)."""

    functions: tuple[Function, ...]
    layers: Mapping[str, Path]  # logical id -> content directory

    def python_path(self, function: Function) -> list[Path]:
        """``sys.path`` in Lambda, before the runtime's own: the task root, then /opt/python
        (each layer's ``python/``, merged)."""
        return [function.code_dir, *(self.layers[lid] / "python" for lid in function.layers)]


# --- reading the template --------------------------------------------------------------------

Resources = dict[str, tuple[str, dict[str, Any]]]


class _CfnLoader(yaml.SafeLoader):
    """A SafeLoader that reads CloudFormation short-form tags (``!Ref X``) as long form."""


def _short_tag(loader: _CfnLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    key = suffix if suffix in ("Ref", "Condition") else f"Fn::{suffix}"
    return {key: value}


_CfnLoader.add_multi_constructor("!", _short_tag)


def _own_resources(path: Path) -> tuple[Resources, dict[str, str]]:
    """Type and properties of every resource with SAM's Globals merged in (the parts read
    here: lists concatenated, Globals first; maps merged, the resource winning), and the
    parameters' defaults."""
    document = yaml.load(path.read_text(encoding="utf-8"), Loader=_CfnLoader)  # noqa: S506
    parameters = {
        name: str(spec["Default"])
        for name, spec in (document.get("Parameters") or {}).items()
        if isinstance(spec, dict) and "Default" in spec
    }
    globals_function = (document.get("Globals") or {}).get("Function") or {}
    resources: Resources = {}
    for logical_id, resource in (document.get("Resources") or {}).items():
        properties = dict(resource.get("Properties") or {})
        if resource.get("Type") == FUNCTION_TYPE:
            variables = {
                **((globals_function.get("Environment") or {}).get("Variables") or {}),
                **((properties.get("Environment") or {}).get("Variables") or {}),
            }
            layers = [*globals_function.get("Layers", []), *properties.get("Layers", [])]
            properties = {**globals_function, **properties, "Layers": layers}
            properties["Environment"] = {"Variables": variables}
        resources[logical_id] = (resource.get("Type", ""), properties)
    return resources, parameters


def _resources(path: Path) -> tuple[Resources, dict[str, str]]:
    """pitcrew's own template reader (the local runtime's) when it is there, else ours."""
    try:
        from pitcrew.local.template import load_template

        template = load_template(path)
        resources = {lid: (res.type, res.properties) for lid, res in template.resources.items()}
        return resources, dict(template.parameters)
    except (ImportError, AttributeError):
        return _own_resources(path)


def _ref(value: Any) -> str | None:
    return value.get("Ref") if isinstance(value, dict) and len(value) == 1 else None


def _variable(name: str, value: Any, parameters: Mapping[str, str]) -> str:
    """An environment variable's value: a literal, a parameter's default, or a stand-in for
    what only a deployed stack can resolve (a queue's URL, a table's name)."""
    if isinstance(value, str | int | float):
        return str(value)
    ref = _ref(value)
    if ref is not None and ref in parameters:
        return parameters[ref]
    return f"bench-{name.lower().replace('_', '-')}"


def read_stack(template: Path = TEMPLATE) -> Stack:
    """The template's functions and layers. Relative ``CodeUri`` / ``ContentUri`` are
    resolved against the template's directory (a built template names build directories)."""
    resources, parameters = _resources(template)
    layers = {
        lid: (template.parent / properties["ContentUri"]).resolve()
        for lid, (type_, properties) in resources.items()
        if type_ == LAYER_TYPE and isinstance(properties.get("ContentUri"), str)
    }
    functions = []
    for logical_id, (type_, properties) in resources.items():
        if type_ != FUNCTION_TYPE or not isinstance(properties.get("CodeUri"), str):
            continue
        code_dir = (template.parent / properties["CodeUri"]).resolve()
        variables = (properties.get("Environment") or {}).get("Variables") or {}
        functions.append(
            Function(
                logical_id=logical_id,
                name=code_dir.name,
                code_dir=code_dir,
                handler=str(properties.get("Handler", "app.handler")),
                layers=tuple(r for r in map(_ref, properties.get("Layers") or []) if r),
                environment={k: _variable(k, v, parameters) for k, v in variables.items()},
                events=properties.get("Events") or {},
            )
        )
    return Stack(functions=tuple(functions), layers=layers)


def named_like(stack: Stack, source: Stack) -> Stack:
    """``stack`` (a built one) with its functions named as in ``source``: by their folder,
    functions/<name>/, rather than their build directory."""
    names = {f.logical_id: f.name for f in source.functions}
    return replace(
        stack,
        functions=tuple(replace(f, name=names.get(f.logical_id, f.name)) for f in stack.functions),
    )


# --- running a fresh interpreter -------------------------------------------------------------


def lambda_environment(function: Function | None) -> dict[str, str]:
    """What a process sees in Lambda, minus any way to reach AWS."""
    name = function.name if function else BASELINE
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LANG": "C.UTF-8",
        "TZ": ":UTC",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_LAMBDA_FUNCTION_NAME": f"pitcrew-{name}",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "512",
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_EXECUTION_ENV": "AWS_Lambda_python3.11",
        "LAMBDA_TASK_ROOT": str(function.code_dir if function else REPO),
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",  # fake credentials: no request leaves the machine
        "AWS_SESSION_TOKEN": "bench",
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9",  # the discard port: nothing answers
        "AWS_XRAY_DAEMON_ADDRESS": "127.0.0.1:9",
        "_X_AMZN_TRACE_ID": "Root=1-00000000-000000000000000000000000;Sampled=0",
    }
    if function is not None:
        env.update(function.environment)
    env["PITCREW_CONFIG"] = str(LOCAL_CONFIG)
    env["PITCREW_API_TOKEN"] = "bench"  # noqa: S105
    return env


# The last line of every timed process: its CPU time so far, which tells the parent that its
# imports are done.
_READY = "import sys, time; sys.stdout.write(f'{time.process_time()}\\n'); sys.stdout.flush()"


class JobFailed(Exception):
    """A benchmark process exited with an error; the message carries its stderr."""


@dataclass(frozen=True)
class Job:
    """One fresh interpreter running ``code``."""

    name: str
    code: str
    cwd: Path
    env: Mapping[str, str]
    flags: tuple[str, ...] = ()
    path: tuple[Path, ...] = ()  # put first on sys.path

    def argv(self, *extra: str, report_ready: bool = False) -> list[str]:
        code = self.code
        if self.path:
            code = f"import sys; sys.path[:0] = {[str(p) for p in self.path]!r}\n{code}"
        if report_ready:
            code = f"{code}\n{_READY}"
        return [sys.executable, *self.flags, *extra, "-c", code]

    def run(self, *extra: str) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            self.argv(*extra),
            cwd=self.cwd,
            env=dict(self.env),
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise JobFailed(f"{self.name}: failed in {self.cwd}:\n{result.stderr}")
        return result

    def seconds(self) -> tuple[float, float]:
        """Wall time and CPU time (user + system) of one run, in seconds, from the start of
        the process to the end of its imports (the process says so on stdout). Its exit is
        not timed: a Lambda environment never tears its interpreter down at the end of a cold
        start, and finalising every module takes tens of milliseconds."""
        # stderr goes to a file: a pipe the parent does not read while it waits on stdout
        # would block a process that writes more than a pipe holds.
        with tempfile.TemporaryFile() as stderr:
            start = time.perf_counter()
            with subprocess.Popen(
                self.argv(report_ready=True),
                cwd=self.cwd,
                env=dict(self.env),
                stdout=subprocess.PIPE,
                stderr=stderr,
            ) as process:
                assert process.stdout is not None
                ready = process.stdout.readline()
                wall = time.perf_counter() - start
                process.stdout.read()
                process.wait()
            if process.returncode != 0 or not ready.strip():
                stderr.seek(0)
                message = stderr.read().decode(errors="replace")
                raise JobFailed(f"{self.name}: failed in {self.cwd}:\n{message}")
        return wall, float(ready)


# Installed in the development environment but never in a Lambda package, whatever layers say.
_TOOLING = {"pip", "setuptools", "wheel", "pitcrew"}
_BLOCKER = """import sys
class _NotInLambda:
    blocked = frozenset({blocked!r})
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in self.blocked:
            raise ModuleNotFoundError(f"No module named {{name!r}} (not in this Lambda)", name=name)
        return None
sys.meta_path.insert(0, _NotInLambda())
"""


def _requirement_names(path: Path) -> set[str]:
    """Canonical distribution names pinned in a requirements file (empty if there is none)."""
    if not path.is_file():
        return set()
    names = set()
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.split("#", 1)[0].strip()
        if line:
            names.add(_canonical(line.split("==")[0].split("[")[0]))
    return names


def _canonical(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def not_in_lambda(stack: Stack, function: Function | None) -> set[str]:
    """Top-level modules the development environment has but the function's Lambda would
    not: distributions in neither its layers' nor its own requirements.txt. Some libraries
    import optional packages when they happen to be installed (httpx imports rich and click
    for its command line), so importing them in the venv would bill the function for code
    Lambda never loads."""
    from importlib import metadata

    layer_ids = function.layers if function else ("DepsLayer",)
    allowed = set().union(
        *(_requirement_names(stack.layers[lid] / "requirements.txt") for lid in layer_ids),
        _requirement_names(function.code_dir / "requirements.txt") if function else set(),
    )
    if not allowed:  # no layer says what it carries: nothing can be told apart
        return set()
    blocked: set[str] = set()
    for module, distributions in metadata.packages_distributions().items():
        names = {_canonical(d) for d in distributions}
        stdlib = module in sys.stdlib_module_names
        if names & (allowed | _TOOLING) or module.startswith("_") or stdlib:
            continue
        blocked.add(module)
    return blocked


def import_jobs(stack: Stack, *, built: bool) -> list[Job]:
    """The baseline, then one import of each function's handler module. Developer mode:
    the venv's interpreter in the function's folder (``''``, the folder, is first on
    sys.path), where the packages its Lambda would not have cannot be imported. Built mode:
    an isolated interpreter on the function's build directory and layers, as Lambda's."""
    if not built:

        def code(function: Function | None, statement: str) -> str:
            return _BLOCKER.format(blocked=sorted(not_in_lambda(stack, function))) + statement

        jobs = [Job(BASELINE, code(None, BASELINE_IMPORT), REPO, lambda_environment(None))]
        return jobs + [
            Job(f.name, code(f, f"import {f.module}"), f.code_dir, lambda_environment(f))
            for f in stack.functions
        ]
    layer_path = tuple(dict.fromkeys(p for f in stack.functions for p in stack.python_path(f)[1:]))
    jobs = [Job(BASELINE, BASELINE_IMPORT, REPO, lambda_environment(None), ISOLATED, layer_path)]
    return jobs + [
        Job(
            f.name,
            f"import {f.module}",
            f.code_dir,
            lambda_environment(f),
            ISOLATED,
            tuple(stack.python_path(f)),
        )
        for f in stack.functions
    ]


@dataclass(frozen=True)
class Timing:
    """Medians of one function's runs, and of its paired baseline runs, in seconds."""

    wall: float
    cpu: float  # user + system: what the process itself used, whatever else ran meanwhile
    baseline_wall: float
    baseline_cpu: float
    ratio: float  # the median of the per-pair wall ratios
    cpu_ratio: float


def _paired(pairs: Sequence[tuple[tuple[float, float], tuple[float, float]]]) -> Timing:
    walls = [(f[0], b[0]) for f, b in pairs]
    cpus = [(f[1], b[1]) for f, b in pairs]
    return Timing(
        wall=statistics.median(f for f, _ in walls),
        cpu=statistics.median(f for f, _ in cpus),
        baseline_wall=statistics.median(b for _, b in walls),
        baseline_cpu=statistics.median(b for _, b in cpus),
        ratio=statistics.median(f / b for f, b in walls),
        cpu_ratio=statistics.median(f / b for f, b in cpus),
    )


def measure(baseline: Job, functions: Sequence[Job], runs: int) -> dict[str, Timing]:
    """Each function's timings against the baseline: every function run sits between two
    baseline runs (B F B F B ...), and is compared with their mean; the ratio is the median
    of those ratios. This machine's speed drifts by a quarter within seconds (a plain CPU
    loop does too); the runs on either side see the same drift, so it cancels in the ratio,
    where the medians of runs seconds apart would not. The functions rotate their order every
    round; one untimed round first (bytecode and page caches)."""
    pairs: dict[str, list[tuple[tuple[float, float], tuple[float, float]]]] = {
        job.name: [] for job in functions
    }
    for round_ in range(runs + 1):
        shift = round_ % len(functions)
        before = baseline.seconds()
        for job in [*functions[shift:], *functions[:shift]]:
            function_time = job.seconds()
            after = baseline.seconds()
            if round_:
                around = ((before[0] + after[0]) / 2, (before[1] + after[1]) / 2)
                pairs[job.name].append((function_time, around))
            before = after
    return {name: _paired(timed) for name, timed in pairs.items()}


# --- explaining ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImportTime:
    """One line of ``python -X importtime``."""

    module: str
    own_us: int
    cumulative_us: int
    parent: str | None  # the module being imported when this one was (None: the -c code)


def import_times(job: Job) -> dict[str, ImportTime]:
    """``python -X importtime`` of the job, by module (each module is imported once)."""
    rows: list[tuple[int, str, int, int]] = []
    for line in job.run("-X", "importtime").stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        own_text, cumulative_text, name = line.removeprefix("import time:").split("|")
        depth = (len(name) - len(name.lstrip()) - 1) // 2
        rows.append((depth, name.strip(), int(own_text), int(cumulative_text)))
    # A module's line follows those of the modules it imports, which are one level deeper;
    # so, reading backwards, a line's parent is the nearest line already read that is
    # shallower.
    times: dict[str, ImportTime] = {}
    stack: list[tuple[int, str]] = []
    for depth, name, own, cumulative in reversed(rows):
        while stack and stack[-1][0] >= depth:
            stack.pop()
        times[name] = ImportTime(name, own, cumulative, stack[-1][1] if stack else None)
        stack.append((depth, name))
    return times


def _package(module: str | None) -> str:
    return module.split(".")[0] if module else "-c"


def explain(job: Job, baseline: Mapping[str, ImportTime], top: int) -> None:
    """Print what the job imports beyond the baseline: by package (the own times of its
    modules, summed), and the imports that crossed into each package, with everything they
    imported in turn (stdlib modules the baseline also imports are billed to whoever
    imported them first)."""
    extra = {name: t for name, t in import_times(job).items() if name not in baseline}
    by_package: dict[str, int] = {}
    for t in extra.values():
        by_package[_package(t.module)] = by_package.get(_package(t.module), 0) + t.own_us
    crossings = [t for t in extra.values() if t.parent and _package(t.module) != _package(t.parent)]
    total_ms = sum(by_package.values()) / 1000
    print(f"{job.name}: {total_ms:.1f} ms in imports the baseline does not make. By package:")
    for package, own in sorted(by_package.items(), key=lambda kv: -kv[1])[:top]:
        print(f"    {own / 1000:7.1f} ms  {package}")
    print("  pulled in by (that import, with everything it imported):")
    for t in sorted(crossings, key=lambda t: -t.cumulative_us)[:top]:
        print(f"    {t.cumulative_us / 1000:7.1f} ms  {t.module}  <- {t.parent}")


# --- main ------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=15, help="timed runs of each (median)")
    parser.add_argument("--built", action="store_true", help="measure the make build output")
    parser.add_argument("--explain", action="store_true", help="show what each imports")
    parser.add_argument("--top", type=int, default=12, help="lines per --explain table")
    args = parser.parse_args(argv)
    if args.runs < 5:
        parser.error("--runs: at least 5, for a meaningful median")

    source = read_stack(TEMPLATE)
    stack = source
    if args.built:
        built_template = BUILD_DIR / "template.yaml"
        if not built_template.is_file():
            print(f"{built_template} is missing: run `make build` first", file=sys.stderr)
            return 2
        stack = read_stack(built_template)
    stack = named_like(stack, source)
    stack = replace(
        stack,
        functions=tuple(f for f in stack.functions if (f.code_dir / f"{f.module}.py").is_file()),
    )
    if not stack.functions:
        print(f"no function of {TEMPLATE.name} has its handler module on disk", file=sys.stderr)
        return 2

    jobs = import_jobs(stack, built=args.built)
    try:
        timings = measure(jobs[0], jobs[1:], args.runs)
    except JobFailed as exc:
        print(exc, file=sys.stderr)
        return 1
    where = "built artifacts" if args.built else "development venv"
    print(
        f"{where}, {args.runs} runs of each function, each between two runs of the baseline "
        f"({BASELINE_IMPORT}): times are medians, the ratio the median of each run's ratio to "
        "the mean of its two baseline runs (cpu: user+system)"
    )
    baseline_walls = [t.baseline_wall for t in timings.values()]
    baseline_cpus = [t.baseline_cpu for t in timings.values()]
    print(
        f"{BASELINE:<16} wall {statistics.median(baseline_walls) * 1000:6.1f} ms              "
        f"cpu {statistics.median(baseline_cpus) * 1000:6.1f} ms"
    )
    ratios: dict[str, float] = {}
    for function in stack.functions:
        timing = timings[function.name]
        ratio = ratios[function.name] = timing.ratio
        verdict = "ok" if round(ratio, 2) <= TARGET_RATIO else f"over {TARGET_RATIO}"
        print(
            f"{function.name:<16} wall {timing.wall * 1000:6.1f} ms  ratio {ratio:.2f}  "
            f"cpu {timing.cpu * 1000:6.1f} ms  ratio {timing.cpu_ratio:.2f}  "
            f"({verdict}; import {function.module})"
        )
    if args.explain:  # after the measurement: every job has run fine
        baseline = import_times(jobs[0])
        for job in jobs[1:]:
            explain(job, baseline, args.top)
    worst = max(ratios, key=lambda name: ratios[name])
    print(f"coldstart worst ratio {ratios[worst]:.2f} ({worst})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
