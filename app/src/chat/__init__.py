"""chat: the example HTTP service deployed by charts/chat (standard library only)."""

__version__ = "1.0.0"

__all__ = ["__version__"]
