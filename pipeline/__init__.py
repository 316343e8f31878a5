"""gitops-pipeline: one CI pipeline for GitOps repositories, on the host or in Dagger.

Importing the package stays cheap (no dagger-io): the CLI's local runner needs
none of it. The Dagger main object is registered through the `dagger.mod`
entry point, ``pipeline.module:Pipeline``.
"""

from __future__ import annotations

__version__ = "0.1.0"
