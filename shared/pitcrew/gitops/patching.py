"""Applying a strategic-merge patch to one document of a YAML file while keeping everything
else byte-for-byte: the other documents are never parsed for writing (the file is split at
its ``---`` lines and only the target document is round-tripped), and the target is
round-tripped by ruamel.yaml with its comments, key order, quoting and indentation.

Merging follows Kubernetes' strategic merge for what the allowlist of patches can touch:
``containers``/``initContainers``/``env``/... lists merge by their key (``name``,
``containerPort``, ``mountPath``), other lists are replaced, ``null`` deletes a key. The
identity of the object (``apiVersion``, ``kind``, ``metadata.name``/``namespace``) is not
written: the patch is already known to be about this document.
"""

from __future__ import annotations

import io
import itertools
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import yaml

from pitcrew.errors import BadRequestError
from pitcrew.records import frozen

_DOCUMENT_START = re.compile(r"^---(?:[ \t].*)?$")
_DOCUMENT_END = re.compile(r"^\.\.\.[ \t]*(?:#.*)?\r?\n?(?:\s*(?:#.*)?\r?\n?)*\Z", re.MULTILINE)
# An alias (``*name``, also in a merge key ``<<: *name``): the anchors a document shares.
_ALIAS = re.compile(r"(?<![\w*&])\*([^\s,\[\]{}]+)")
BOM = "\ufeff"
# Lists that strategic merge combines item by item, and the key that identifies an item.
MERGE_KEYS: Mapping[str, str] = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "env": "name",
    "ports": "containerPort",
    "volumeMounts": "mountPath",
    "volumes": "name",
    "imagePullSecrets": "name",
    "tolerations": "key",
}
IDENTITY_KEYS = ("apiVersion", "kind")


@frozen
class Document:
    """One document of a multi-document file: its exact text (with its ``---`` line, if
    any) and its parsed value (None for an empty or comment-only chunk)."""

    index: int
    text: str
    value: Any


def split_documents(text: str) -> list[str]:
    """``text`` cut before each ``---`` line; joining the pieces gives ``text`` back."""
    chunks: list[str] = []
    current: list[str] = []
    for line in text.splitlines(keepends=True):
        if _DOCUMENT_START.match(line.rstrip("\r\n")) and current:
            chunks.append("".join(current))
            current = []
        current.append(line)
    if current or not chunks:
        chunks.append("".join(current))
    return chunks


def documents(text: str) -> list[Document]:
    """Every document of ``text`` with its parsed value (safe loader; invalid ones: None)."""
    found = []
    for index, chunk in enumerate(split_documents(text)):
        try:
            value = yaml.safe_load(chunk)
        except yaml.YAMLError:
            value = None
        found.append(Document(index=index, text=chunk, value=value))
    return found


def matches(value: Any, kind: str, name: str, namespace: str | None = None) -> bool:
    """True when a parsed document is the object ``kind``/``name`` (and, when the document
    names its namespace and one is given, in ``namespace``)."""
    if not isinstance(value, Mapping) or value.get("kind") != kind:
        return False
    metadata = value.get("metadata")
    if not isinstance(metadata, Mapping) or metadata.get("name") != name:
        return False
    declared = metadata.get("namespace")
    return namespace is None or declared is None or declared == namespace


def strip_identity(patch: Mapping[str, Any]) -> dict[str, Any]:
    """The patch without ``apiVersion``, ``kind`` and ``metadata.name``/``namespace``."""
    body = {k: v for k, v in patch.items() if k not in IDENTITY_KEYS}
    metadata = body.get("metadata")
    if isinstance(metadata, Mapping):
        rest = {k: v for k, v in metadata.items() if k not in ("name", "namespace")}
        if rest:
            body["metadata"] = rest
        else:
            del body["metadata"]
    return body


def leaf_paths(patch: Mapping[str, Any], prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Each field the patch sets, as a path; a merged list item is a ``(key, value)`` step."""
    for key, value in patch.items():
        path = (*prefix, key)
        if isinstance(value, Mapping) and value:
            yield from leaf_paths(value, path)
        elif isinstance(value, list) and key in MERGE_KEYS and value:
            merge_key = MERGE_KEYS[key]
            for item in value:
                if isinstance(item, Mapping) and merge_key in item:
                    step = (*path, (merge_key, item[merge_key]))
                    rest = {k: v for k, v in item.items() if k != merge_key}
                    yield from leaf_paths(rest, step) if rest else iter([step])
        else:
            yield path


def defines(value: Any, path: Sequence[Any]) -> bool:
    """True when the parsed document has the field at ``path`` (see ``leaf_paths``)."""
    node = value
    for step in path:
        if isinstance(step, tuple):
            merge_key, wanted = step
            if not isinstance(node, list):
                return False
            node = next(
                (i for i in node if isinstance(i, Mapping) and i.get(merge_key) == wanted), None
            )
            if node is None:
                return False
        elif isinstance(node, Mapping) and step in node:
            node = node[step]
        else:
            return False
    return True


def defines_any(value: Any, patch: Mapping[str, Any]) -> bool:
    return any(defines(value, path) for path in leaf_paths(strip_identity(patch)))


def merged(value: Any, patch: Any) -> Any:
    """``value`` (a parsed document) with a strategic-merge ``patch`` applied, as plain
    data: what Kustomize makes of a base and an overlay's patch (directives are ignored)."""
    if not isinstance(value, Mapping) or not isinstance(patch, Mapping):
        return patch
    out = dict(value)
    for key, item in patch.items():
        current = out.get(key)
        if isinstance(key, str) and key.startswith("$"):
            continue
        if item is None:
            out.pop(key, None)
        elif isinstance(item, Mapping):
            out[key] = merged(current, item) if isinstance(current, Mapping) else item
        elif isinstance(item, list) and key in MERGE_KEYS and isinstance(current, list):
            merge_key, items = MERGE_KEYS[key], list(current)
            for entry in item:
                if not isinstance(entry, Mapping) or merge_key not in entry:
                    continue
                at = next(
                    (
                        i
                        for i, e in enumerate(items)
                        if isinstance(e, Mapping) and e.get(merge_key) == entry[merge_key]
                    ),
                    None,
                )
                if at is None:
                    items.append(entry)
                else:
                    items[at] = merged(items[at], entry)
            out[key] = items
        else:
            out[key] = item
    return out


# --- round trip ------------------------------------------------------------------------------


def _mapping_indent(text: str) -> int:
    """The indentation step of nested mappings in ``text`` (2 when it cannot tell)."""
    lines = [
        line
        for line in text.splitlines()
        if line.strip() and not line.lstrip().startswith(("#", "---"))
    ]
    for parent, child in itertools.pairwise(lines):
        stripped = parent.strip()
        if stripped.endswith(":") and not stripped.startswith("- "):
            step = (len(child) - len(child.lstrip())) - (len(parent) - len(parent.lstrip()))
            if step > 0 and not child.lstrip().startswith("- "):
                return step
    return 2


def _round_trip(text: str) -> Any:
    from ruamel.yaml import YAML
    from ruamel.yaml.util import load_yaml_guess_indent

    _, sequence_indent, offset = load_yaml_guess_indent(text)
    mapping = _mapping_indent(text)
    handler = YAML(typ="rt")
    handler.preserve_quotes = True
    handler.width = 4096  # never re-wrap a long line
    if sequence_indent is None:
        sequence_indent, offset = mapping + 2, mapping
    handler.indent(mapping=mapping, sequence=sequence_indent, offset=offset)
    return handler


def _plain(value: Any) -> Any:
    """A patch value as a fresh round-trip node (new keys keep the patch's order)."""
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    if isinstance(value, Mapping):
        node = CommentedMap()
        for key, item in value.items():
            node[key] = _plain(item)
        return node
    if isinstance(value, list | tuple):
        return CommentedSeq(_plain(item) for item in value)
    return value


def _scalar_like(current: Any, value: Any) -> Any:
    """``value`` in the quoting style of the scalar it replaces."""
    from ruamel.yaml.scalarstring import DoubleQuotedScalarString, ScalarString

    if isinstance(current, ScalarString) and isinstance(value, str):
        return type(current)(value)
    if isinstance(value, str) and not isinstance(yaml.safe_load(value or '""'), str):
        # A string that would read as a number or a boolean ("1", "true") needs quotes:
        # the double quotes Kubernetes manifests use, not ruamel's single ones.
        return DoubleQuotedScalarString(value)
    return value


def _anchor(node: Any) -> str | None:
    anchor = getattr(node, "anchor", None)
    return getattr(anchor, "value", None)


def _keep_anchors(node: Any, seen: set[int] | None = None) -> None:
    """Have ruamel write back every anchor of a collection, aliased or not (by default it
    drops the ones nothing refers to, changing a line the patch did not touch)."""
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    seen = set() if seen is None else seen
    if isinstance(node, CommentedMap | CommentedSeq) and id(node) not in seen:
        seen.add(id(node))
        if _anchor(node) is not None:
            node.yaml_set_anchor(_anchor(node), always_dump=True)
        for child in node.values() if isinstance(node, CommentedMap) else node:
            _keep_anchors(child, seen)


def _unshared(node: Any, path: str, aliased: frozenset[str]) -> Any:
    """``node``, which the patch writes into; refused when other places alias it (a change
    there would reach them too, beyond what the patch and its allowlist check say)."""
    name = _anchor(node)
    if name is not None and name in aliased:
        raise BadRequestError(
            f"{path or 'the document'} is the YAML anchor &{name}, which other places alias: "
            "patching it would change them too; change the manifest by hand"
        )
    return node


def _merge(
    target: Any, patch: Mapping[str, Any], where: str, aliased: frozenset[str] = frozenset()
) -> None:
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    _unshared(target, where, aliased)
    for key, value in patch.items():
        path = f"{where}.{key}" if where else str(key)
        if isinstance(key, str) and key.startswith("$"):
            raise BadRequestError(f"patch directive {path} is not supported")
        current = target.get(key)
        if value is None:
            target.pop(key, None)
        elif isinstance(value, Mapping):
            if isinstance(current, CommentedMap):
                _merge(current, value, path, aliased)
            else:
                target[key] = _plain(value)
        elif isinstance(value, list) and key in MERGE_KEYS and isinstance(current, CommentedSeq):
            _merge_list(_unshared(current, path, aliased), value, MERGE_KEYS[key], path, aliased)
        elif isinstance(value, list):
            if current != value:
                target[key] = _plain(value)
        elif current != value or not isinstance(current, type(value)):
            target[key] = _scalar_like(current, value)


def _merge_list(
    current: Any,
    items: list[Any],
    merge_key: str,
    path: str,
    aliased: frozenset[str] = frozenset(),
) -> None:
    """Strategic merge of a keyed list: items merge into the one with the same key, or
    are appended."""
    from ruamel.yaml.comments import CommentedMap

    for item in items:
        if not isinstance(item, Mapping) or merge_key not in item:
            raise BadRequestError(f"{path}: each item needs its {merge_key!r}")
        existing = next(
            (
                i
                for i in current
                if isinstance(i, CommentedMap) and i.get(merge_key) == item[merge_key]
            ),
            None,
        )
        if existing is None:
            current.append(_plain(item))
        else:
            _merge(existing, item, f"{path}[{merge_key}={item[merge_key]}]", aliased)


def patch_document(chunk: str, patch: Mapping[str, Any]) -> str:
    """One document's text with ``patch`` merged in; everything the patch does not touch is
    written back as it was (its line endings and byte order mark too)."""
    bom = BOM if chunk.startswith(BOM) else ""
    chunk = chunk.removeprefix(bom)
    lines = chunk.splitlines(keepends=True)
    head = ""
    if lines and _DOCUMENT_START.match(lines[0].rstrip("\r\n")):
        head, body = lines[0], "".join(lines[1:])
    else:
        body = chunk
    # A document end marker ("...") is kept as it was, outside the round trip.
    end = ""
    match = _DOCUMENT_END.search(body)
    if match is not None:
        body, end = body[: match.start()], body[match.start() :]
    crlf, body = _lf(body)
    handler = _round_trip(body)
    data = handler.load(body)
    if not isinstance(data, Mapping):
        raise BadRequestError("the manifest document is not a mapping")
    _keep_anchors(data)
    _merge(data, strip_identity(patch), "", frozenset(_ALIAS.findall(body)))
    out = io.StringIO()
    handler.dump(data, out)
    text = out.getvalue()
    # The dump ends with exactly one newline; keep the blank lines the chunk ended with.
    trailing = body[len(body.rstrip("\n")) :]
    text = text.rstrip("\n") + (trailing or "")
    return bom + head + (text.replace("\n", "\r\n") if crlf else text) + end


def _lf(text: str) -> tuple[bool, str]:
    """(whether every line of ``text`` ends in CRLF, ``text`` with LF endings then): the
    round trip reads and writes LF, and a CRLF file is written back as CRLF."""
    crlf = "\r\n" in text and text.count("\n") == text.count("\r\n")
    return crlf, text.replace("\r\n", "\n") if crlf else text


def apply_patch(text: str, index: int, patch: Mapping[str, Any]) -> str:
    """``text`` with document ``index`` patched and every other document untouched."""
    chunks = split_documents(text)
    if not 0 <= index < len(chunks):
        raise BadRequestError(f"no document {index} in the file (it has {len(chunks)})")
    chunks[index] = patch_document(chunks[index], patch)
    return "".join(chunks)


def unified_diff(path: str, old: str | None, new: str) -> str:
    """A ``git diff``-style unified diff of one file (``old`` None: a new file)."""
    import difflib

    before = (old or "").splitlines(keepends=True)
    after = new.splitlines(keepends=True)
    lines = difflib.unified_diff(
        before, after, fromfile=f"a/{path}" if old is not None else "/dev/null", tofile=f"b/{path}"
    )
    return "".join(line if line.endswith("\n") else line + "\n" for line in lines)


def dump_new(value: Mapping[str, Any]) -> str:
    """A new YAML document (a kustomize patch file), block style, keys in the given order."""
    from ruamel.yaml import YAML

    handler = YAML(typ="rt")
    handler.indent(mapping=2, sequence=4, offset=2)
    out = io.StringIO()
    handler.dump(_plain(value), out)
    return out.getvalue()


def add_list_entry(chunk: str, key: str, entry: Any) -> str:
    """A mapping document with ``entry`` appended to its list ``key`` (created at the end
    when missing), written back round-trip (kustomization.yaml's ``patches``)."""
    bom = BOM if chunk.startswith(BOM) else ""
    crlf, chunk = _lf(chunk.removeprefix(bom))
    handler = _round_trip(chunk)
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    data = handler.load(chunk)
    if data is None:
        data = CommentedMap()
    if not isinstance(data, CommentedMap):
        raise BadRequestError("the kustomization is not a mapping")

    _keep_anchors(data)
    current = data.get(key)
    if isinstance(current, CommentedSeq):
        if current.fa.flow_style():
            # ruamel writes a one-key mapping in a flow list without its braces, a form
            # some readers refuse: the list becomes a block list, its entries kept as written.
            current.fa.set_block_style()
        current.append(_plain(entry))
    else:
        data[key] = _plain([entry])
    out = io.StringIO()
    handler.dump(data, out)
    text = out.getvalue()
    return bom + (text.replace("\n", "\r\n") if crlf else text)
