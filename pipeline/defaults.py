"""Names and defaults the Dagger module's signatures show, in a module that imports nothing
(the module's face loads before anything heavy; pipeline.config re-exports them)."""

from __future__ import annotations

CONFIG_FILE = "pipeline.yaml"
DEFAULT_KUBERNETES_VERSION = "1.35.0"
