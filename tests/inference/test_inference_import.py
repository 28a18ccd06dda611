"""The edge runtime imports the policies without torch: keep it that way."""

from __future__ import annotations

import subprocess
import sys


def test_policies_import_without_torch_or_training():
    code = (
        "import sys, scai.inference as si; si.parse_budget('3ms'); "
        "bad = [m for m in ('torch', 'scai.training', 'scai.models') if m in sys.modules]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
