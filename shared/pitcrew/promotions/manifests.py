"""The version bump in an environment's folder of the GitOps repository: the Kustomize
``images[].newTag`` of the app's image, else the ``image`` of the Deployment container that
runs it. Text in, text out, round-tripped so the rest of each file stays as it was.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pitcrew.errors import InputError
from pitcrew.gitops.patching import apply_patch, documents, split_documents
from pitcrew.records import frozen

KUSTOMIZATIONS = ("kustomization.yaml", "kustomization.yml", "Kustomization")
_WORKLOADS = ("Deployment", "StatefulSet", "DaemonSet")


class ManifestNotFoundError(InputError):
    """No file of the environment's folder names the app's image."""


@frozen
class Bump:
    """The change: ``path`` from ``old`` to ``new`` text; ``previous`` is the version it had."""

    path: str
    old: str
    new: str
    previous: str | None

    @property
    def changed(self) -> bool:
        return self.old != self.new


def image_matches(image_name: str, app: str, image: str | None) -> bool:
    """Whether ``image_name`` (no tag) is the app's: the configured image, else one whose last
    path segment is the app's name."""
    if image:
        return image_name == image
    return image_name.rsplit("/", 1)[-1] == app


def split_image(reference: str) -> tuple[str, str | None]:
    """``registry/name:tag`` -> (``registry/name``, ``tag``); a digest counts as no tag."""
    name = reference.split("@", 1)[0]
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > slash:
        return name[:colon], name[colon + 1 :]
    return name, None


def _set_new_tag(chunk: str, image_name: str, version: str) -> str:
    """The Kustomization document ``chunk`` with that image's ``newTag`` set, round-tripped
    by ruamel.yaml (comments, quoting and indentation kept)."""
    import io

    from ruamel.yaml import YAML
    from ruamel.yaml.scalarstring import ScalarString
    from ruamel.yaml.util import load_yaml_guess_indent

    lines = chunk.splitlines(keepends=True)
    head = lines[0] if lines and lines[0].startswith("---") else ""
    body = chunk[len(head) :]
    _, sequence_indent, offset = load_yaml_guess_indent(body)
    handler = YAML(typ="rt")
    handler.preserve_quotes = True
    handler.width = 4096
    if sequence_indent is not None:
        handler.indent(mapping=2, sequence=sequence_indent, offset=offset)
    data = handler.load(body)
    for entry in data["images"]:
        if isinstance(entry, dict) and entry.get("name") == image_name:
            current = entry.get("newTag")
            entry["newTag"] = (
                type(current)(version) if isinstance(current, ScalarString) else version
            )
    out = io.StringIO()
    handler.dump(data, out)
    trailing = body[len(body.rstrip("\r\n")) :]
    return head + out.getvalue().rstrip("\n") + (trailing or "")


def _kustomize_bump(path: str, text: str, app: str, image: str | None, version: str) -> Bump | None:
    for document in documents(text):
        value = document.value
        if not isinstance(value, Mapping) or not isinstance(value.get("images"), list):
            continue
        for entry in value["images"]:
            name = str(entry.get("name", "")) if isinstance(entry, Mapping) else ""
            if not image_matches(name, app, image):
                continue
            previous = entry.get("newTag")
            if previous is not None and str(previous) == version:
                return Bump(path, text, text, str(previous))
            chunks = split_documents(text)
            chunks[document.index] = _set_new_tag(chunks[document.index], name, version)
            return Bump(path, text, "".join(chunks), None if previous is None else str(previous))
    return None


def _containers(value: Mapping[str, Any]) -> list[Any]:
    spec = ((value.get("spec") or {}).get("template") or {}).get("spec") or {}
    return [c for c in spec.get("containers") or [] if isinstance(c, Mapping)]


def _workload_bump(path: str, text: str, app: str, image: str | None, version: str) -> Bump | None:
    for document in documents(text):
        value = document.value
        if not isinstance(value, Mapping) or value.get("kind") not in _WORKLOADS:
            continue
        for container in _containers(value):
            name, tag = split_image(str(container.get("image", "")))
            if not image_matches(name, app, image):
                continue
            if tag == version:
                return Bump(path, text, text, tag)
            patch = {
                "spec": {
                    "template": {
                        "spec": {
                            "containers": [
                                {"name": container.get("name"), "image": f"{name}:{version}"}
                            ]
                        }
                    }
                }
            }
            return Bump(path, text, apply_patch(text, document.index, patch), tag)
    return None


def bump_version(
    files: Mapping[str, str], folder: str, app: str, version: str, image: str | None = None
) -> Bump:
    """The bump of ``app`` to ``version`` in ``folder`` (``files``: path -> text of the
    repository's files under it). The kustomization at the folder's root wins over workloads."""
    root = folder.strip("/")
    prefix = f"{root}/" if root else ""
    mine = {p: t for p, t in files.items() if p.startswith(prefix)}
    for name in KUSTOMIZATIONS:
        path = f"{prefix}{name}"
        if path in mine:
            found = _kustomize_bump(path, mine[path], app, image, version)
            if found is not None:
                return found
    for path in sorted(mine, key=lambda p: (p.count("/"), p)):
        if path.endswith((".yaml", ".yml")):
            found = _workload_bump(path, mine[path], app, image, version)
            if found is not None:
                return found
    wanted = image or f"an image named .../{app}"
    raise ManifestNotFoundError(
        f"no kustomization images[] entry or workload container in {root or '/'} runs {wanted}"
    )
