"""``python -m spp_dci_ibr``: the ``spp-dci-ibr`` command line (see :mod:`spp_dci_ibr.cli`)."""

from __future__ import annotations

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
