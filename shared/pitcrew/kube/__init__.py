"""Kubernetes context for incident triage: ``gather(subject, config)`` reads what a cluster
says about an alert's subject into a bounded ``ClusterContext``.

The kubernetes client is imported only when a cluster is actually read, so importing this
package (and the diagnose handler) stays fast.
"""

from pitcrew.kube.context import gather

__all__ = ["gather"]
