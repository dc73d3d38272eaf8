"""The GitOps repository: finding a workload's manifest (``manifests.find_manifest``) and
changing one document of it with a patch while keeping the rest of the file byte-for-byte
(``patching``). Pure text in, text out: the GitHub side is ``pitcrew.github``.
"""

from pitcrew.gitops.manifests import (
    Change,
    ManifestSource,
    ManifestTarget,
    WorkloadId,
    find_manifest,
    render_change,
)

__all__ = [
    "Change",
    "ManifestSource",
    "ManifestTarget",
    "WorkloadId",
    "find_manifest",
    "render_change",
]
