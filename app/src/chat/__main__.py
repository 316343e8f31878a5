"""Entry point for ``python -m chat``."""

from chat.server import main

if __name__ == "__main__":
    raise SystemExit(main())
