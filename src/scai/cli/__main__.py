"""``python -m scai.cli``: the ``scai`` command, also what ``torchrun -m scai.cli train ...`` starts."""

from __future__ import annotations

import sys

from scai.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
