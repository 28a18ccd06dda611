"""``python -m scai.distributed.write_archive OUT N [--shard-size S] ...``: write a synthetic archive.

The command line of :func:`scai.datasets.write_archive` (:func:`scai.datasets.archive.main`).
It lives here because ``python -m scai.datasets.archive`` would run a module that importing
``scai.datasets`` has already imported (Python warns about that).
"""

from __future__ import annotations

from scai.datasets.archive import main

if __name__ == "__main__":
    raise SystemExit(main(prog="python -m scai.distributed.write_archive"))
