"""Finding the manifest of a workload in the GitOps repository, and the change a patch makes.

``find_manifest`` tries the ``gitops.manifest_paths`` templates first (``{cluster}``,
``{namespace}``, ``{workload}``, and ``{kind}`` in lower case: ``deployment``), then searches
the repository's YAML files for a document with that kind, name and namespace. A template
(or a file found) that is a Kustomize overlay (a directory with a ``kustomization.yaml``) is
resolved the way ``kustomize build`` would find the object:

1. a patch file of the overlay that already sets one of the patched fields is changed;
2. else a resource file inside the overlay itself that defines the object is changed;
3. else (the object lives in a shared base) a new patch file is written in the overlay and
   listed under the overlay's ``patches``, so other overlays of that base are untouched.

A manifest the search finds in a base that overlays use goes through the workload's own
overlay the same way (the overlay whose path names its cluster, and its namespace when several
do); when none or several are its own, the base is patched, and the target says which overlays
the change reaches.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any, Protocol

import yaml

from pitcrew.errors import NotFoundError
from pitcrew.gitops.patching import (
    Document,
    add_list_entry,
    apply_patch,
    defines_any,
    documents,
    dump_new,
    matches,
    merged,
    strip_identity,
    unified_diff,
)
from pitcrew.records import frozen

KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
YAML_SUFFIXES = (".yaml", ".yml")
# The search reads at most this many files: a repository is not crawled without bound.
MAX_SEARCHED_FILES = 200
MAX_KUSTOMIZE_DEPTH = 8
# Kustomizations read to learn which overlays use a base a search found the workload in.
MAX_OVERLAYS_READ = 60


class ManifestSource(Protocol):
    """A repository at one commit: its file paths, and a file's text (None if absent)."""

    def files(self) -> tuple[str, ...]: ...

    def read(self, path: str) -> str | None: ...


@frozen
class WorkloadId:
    """The object a fix is for."""

    cluster: str
    namespace: str | None
    kind: str
    name: str

    def fill(self, template: str) -> str:
        return template.format(
            cluster=self.cluster,
            namespace=self.namespace or "",
            kind=self.kind.lower(),
            workload=self.name,
        )


@frozen
class ManifestTarget:
    """Where a patch lands. ``document`` is None for a new Kustomize patch file, which
    ``kustomization`` (the overlay's file) must then list."""

    path: str
    document: int | None
    text: str | None
    workload: Mapping[str, Any]
    how: str
    kustomization: str | None = None
    kustomization_text: str | None = None


@frozen
class Change:
    """The files a fix writes (path -> new text) and their unified diff."""

    files: Mapping[str, str]
    diff: str

    @property
    def empty(self) -> bool:
        return not self.files


def _kustomization_in(directory: str, paths: frozenset[str]) -> str | None:
    for name in KUSTOMIZATION_FILES:
        candidate = posixpath.join(directory, name) if directory else name
        if candidate in paths:
            return candidate
    return None


def _is_dir(path: str, paths: Iterable[str]) -> bool:
    prefix = path.rstrip("/") + "/"
    return any(p.startswith(prefix) for p in paths)


def _find_in(text: str, workload: WorkloadId) -> Document | None:
    for document in documents(text):
        if matches(document.value, workload.kind, workload.name, workload.namespace):
            return document
    return None


class _Kustomize:
    """Reads an overlay's kustomization and what it references."""

    def __init__(self, source: ManifestSource, paths: frozenset[str]) -> None:
        self.source = source
        self.paths = paths
        self._loaded: dict[str, dict[str, Any]] = {}  # each kustomization read once

    def load(self, kustomization: str) -> dict[str, Any]:
        if kustomization not in self._loaded:
            text = self.source.read(kustomization) or ""
            try:
                value = yaml.safe_load(text)
            except yaml.YAMLError:
                value = None
            self._loaded[kustomization] = value if isinstance(value, dict) else {}
        return self._loaded[kustomization]

    def patch_files(self, kustomization: str) -> list[str]:
        spec = self.load(kustomization)
        directory = posixpath.dirname(kustomization)
        found = []
        for entry in spec.get("patches") or []:
            if isinstance(entry, Mapping) and isinstance(entry.get("path"), str):
                found.append(posixpath.normpath(posixpath.join(directory, entry["path"])))
        for entry in spec.get("patchesStrategicMerge") or []:
            if isinstance(entry, str) and "\n" not in entry:
                found.append(posixpath.normpath(posixpath.join(directory, entry)))
        return found

    def resource_files(self, kustomization: str, depth: int = 0) -> list[str]:
        """Every YAML file the kustomization includes, bases followed."""
        if depth > MAX_KUSTOMIZE_DEPTH:
            return []
        spec = self.load(kustomization)
        directory = posixpath.dirname(kustomization)
        found = []
        for entry in [*(spec.get("resources") or []), *(spec.get("bases") or [])]:
            if not isinstance(entry, str) or "://" in entry or entry.startswith("github.com/"):
                continue  # a remote base cannot be changed from here
            path = posixpath.normpath(posixpath.join(directory, entry))
            if path in self.paths:
                found.append(path)
            else:
                nested = _kustomization_in(path, self.paths)
                if nested is not None:
                    found.extend(self.resource_files(nested, depth + 1))
        return found


def _overlay_target(
    source: ManifestSource,
    paths: frozenset[str],
    kustomization: str,
    workload: WorkloadId,
    patch: Mapping[str, Any],
    *,
    reader: _Kustomize | None = None,
) -> ManifestTarget | None:
    reader = reader or _Kustomize(source, paths)
    overlay = posixpath.dirname(kustomization)
    own_patch_file = posixpath.join(overlay, patch_file_name(workload))
    defining: tuple[str, Document] | None = None
    for path in reader.resource_files(kustomization):
        text = source.read(path)
        found = _find_in(text, workload) if text is not None else None
        if found is not None and text is not None:
            defining = (path, found)
            break
    if defining is None:
        return None
    resource_path, resource_doc = defining
    # The overlay's patches of the object (a patch file's namespace may be left to the
    # overlay: kind and name match). The allowlist judges the object as the overlay makes
    # it, not the base: an overlay may run it smaller or larger.
    patching = [
        (path, text, document)
        for path in reader.patch_files(kustomization)
        if (text := source.read(path)) is not None
        for document in documents(text)
        if matches(document.value, workload.kind, workload.name)
    ]
    base_value = resource_doc.value
    for _, _, document in patching:
        base_value = merged(base_value, strip_identity(document.value))
    for path, text, document in patching:
        if defines_any(document.value, patch) or path == own_patch_file:
            return ManifestTarget(
                path=path,
                document=document.index,
                text=text,
                workload=base_value,
                how=f"kustomize patch {path} of overlay {overlay}",
            )
    inside_overlay = not overlay or resource_path.startswith(overlay + "/")
    if inside_overlay:
        return ManifestTarget(
            path=resource_path,
            document=resource_doc.index,
            text=source.read(resource_path),
            workload=base_value,
            how=f"resource {resource_path} of overlay {overlay}",
        )
    return ManifestTarget(
        path=own_patch_file,
        document=None,
        text=None,
        workload=base_value,
        how=f"new patch file in overlay {overlay} (the object is defined in {resource_path})",
        kustomization=kustomization,
        kustomization_text=source.read(kustomization),
    )


def patch_file_name(workload: WorkloadId) -> str:
    return f"pitcrew-{workload.kind.lower()}-{workload.name}.yaml"


def _search_order(paths: Iterable[str], workload: WorkloadId) -> list[str]:
    """YAML files, those whose path names the workload (then its namespace, then its
    cluster) first."""

    def rank(path: str) -> tuple[int, str]:
        parts = path.lower()
        score = 0
        if workload.name.lower() in parts:
            score -= 4
        if workload.namespace and workload.namespace.lower() in parts:
            score -= 2
        if workload.cluster.lower() in parts:
            score -= 1
        return score, path

    candidates = [
        p
        for p in paths
        if p.endswith(YAML_SUFFIXES) and posixpath.basename(p) not in KUSTOMIZATION_FILES
    ]
    return sorted(candidates, key=rank)


def find_manifest(
    source: ManifestSource,
    workload: WorkloadId,
    templates: Iterable[str],
    patch: Mapping[str, Any],
) -> ManifestTarget:
    """Where ``patch`` for ``workload`` lands; ``NotFoundError`` saying what was tried."""
    paths = frozenset(source.files())
    tried: list[str] = []
    for template in templates:
        candidate = workload.fill(template).strip("/")
        tried.append(candidate)
        kustomization: str | None = None
        if posixpath.basename(candidate) in KUSTOMIZATION_FILES and candidate in paths:
            kustomization = candidate
        elif candidate not in paths and _is_dir(candidate, paths):
            kustomization = _kustomization_in(candidate, paths)
        if kustomization is not None:
            target = _overlay_target(source, paths, kustomization, workload, patch)
            if target is not None:
                return target
            continue
        if candidate in paths:
            text = source.read(candidate)
            found = _find_in(text, workload) if text is not None else None
            if found is not None:
                return ManifestTarget(
                    path=candidate,
                    document=found.index,
                    text=text,
                    workload=found.value,
                    how=f"manifest_paths template {template}",
                )
    best: tuple[int, ManifestTarget] | None = None
    for path in _search_order(paths, workload)[:MAX_SEARCHED_FILES]:
        text = source.read(path)
        found = _find_in(text, workload) if text is not None else None
        if found is None or text is None:
            continue
        declared = (found.value.get("metadata") or {}).get("namespace")
        score = (2 if declared == workload.namespace else 0) + (
            1 if workload.cluster.lower() in path.lower() else 0
        )
        directory_kustomization = _kustomization_in(posixpath.dirname(path), paths)
        target = ManifestTarget(
            path=path,
            document=found.index,
            text=text,
            workload=found.value,
            how="search of the repository"
            + (f" (listed by {directory_kustomization})" if directory_kustomization else ""),
        )
        if best is None or score > best[0]:
            best = (score, target)
        if score == 3:
            break
    if best is not None:
        return _through_its_overlay(source, paths, best[1], workload, patch)
    where = f"{workload.kind} {workload.namespace or '-'}/{workload.name}"
    raise NotFoundError(
        f"no manifest for {where}: tried {', '.join(tried) or 'no manifest_paths'} "
        f"and searched {min(len(paths), MAX_SEARCHED_FILES)} files"
    )


def _through_its_overlay(
    source: ManifestSource,
    paths: frozenset[str],
    target: ManifestTarget,
    workload: WorkloadId,
    patch: Mapping[str, Any],
) -> ManifestTarget:
    """A manifest a search found in a Kustomize base that overlays use: patched in the
    workload's own overlay (the one whose path names its cluster, and its namespace when
    several do), so the other overlays of the base stay as they are. When no overlay, or
    more than one, is the workload's, the base is patched and the target says which overlays
    that changes, for the pull request's reviewers."""
    reader = _Kustomize(source, paths)
    home = posixpath.dirname(target.path)
    kustomizations = sorted(p for p in paths if posixpath.basename(p) in KUSTOMIZATION_FILES)
    overlays = [
        k
        for k in kustomizations[:MAX_OVERLAYS_READ]
        if posixpath.dirname(k) != home and target.path in reader.resource_files(k)
    ]
    if not overlays:
        return target
    # A directory named exactly like the cluster: "prod" is not in clusters/preprod/.
    mine = [k for k in overlays if workload.cluster.lower() in _directories(k)]
    if workload.namespace:
        # An overlay that sets another namespace renders some other copy of the object.
        mine = [k for k in mine if reader.load(k).get("namespace") in (None, workload.namespace)]
        if len(mine) > 1:
            mine = [k for k in mine if workload.namespace.lower() in _directories(k)] or mine
    # An overlay and the kustomizations above it that gather it (clusters/prod-eu/ for
    # clusters/prod-eu/payments/api/): the deepest is the workload's own, unless it gathers
    # an overlay that is not (then the patch would reach that one).
    deepest = max(mine, key=lambda k: k.count("/"), default=None)
    if (
        deepest is not None
        and all(k == deepest or deepest.startswith(posixpath.dirname(k) + "/") for k in mine)
        and not any(
            k != deepest and k.startswith(posixpath.dirname(deepest) + "/") for k in overlays
        )
    ):
        found = _overlay_target(source, paths, deepest, workload, patch, reader=reader)
        if found is not None:
            return replace(found, how=f"{found.how}, found by a search in {target.path}")
    shared = ", ".join(posixpath.dirname(k) or "." for k in overlays)
    return replace(
        target,
        how=f"{target.how}; a Kustomize base that more than this workload's overlay uses: "
        f"the change reaches every overlay of it ({shared})",
    )


def _directories(kustomization: str) -> set[str]:
    return {part.lower() for part in posixpath.dirname(kustomization).split("/") if part}


def render_change(target: ManifestTarget, patch: Mapping[str, Any]) -> Change:
    """The new text of each file the patch changes, and the diff. Empty when the manifest
    already says what the patch says."""
    if target.document is not None and target.text is not None:
        new = apply_patch(target.text, target.document, patch)
        if new == target.text:
            return Change(files={}, diff="")
        return Change(files={target.path: new}, diff=unified_diff(target.path, target.text, new))
    metadata = {
        "name": patch.get("metadata", {}).get("name") or target.workload["metadata"]["name"]
    }
    document = {
        "apiVersion": target.workload.get("apiVersion") or patch.get("apiVersion"),
        "kind": target.workload.get("kind"),
        "metadata": metadata,
        **strip_identity(patch),
    }
    text = dump_new(document)
    files = {target.path: text}
    diff = unified_diff(target.path, None, text)
    if target.kustomization is not None:
        old = target.kustomization_text or ""
        entry = {"path": posixpath.relpath(target.path, posixpath.dirname(target.kustomization))}
        new_kustomization = add_list_entry(old, "patches", entry)
        files[target.kustomization] = new_kustomization
        diff += unified_diff(target.kustomization, old, new_kustomization)
    return Change(files=files, diff=diff)
