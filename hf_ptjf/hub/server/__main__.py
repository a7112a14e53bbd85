"""``python -m hf_ptjf.hub.server --root DIR [--port N]``: serve the offline Hub until interrupted."""

import sys

from .lifecycle import main

if __name__ == "__main__":
    sys.exit(main())
