"""The provider tests deploy the same code as the integration tests (``memory_code``, by path)."""

from __future__ import annotations

import sys
from pathlib import Path

_CODE = str(Path(__file__).parent.parent / "integration")
if _CODE not in sys.path:
    sys.path.insert(0, _CODE)
