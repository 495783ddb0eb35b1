"""Stable content hashes for caches and provenance."""

from __future__ import annotations

import hashlib
import json
from typing import Any


def fingerprint(obj: Any, length: int = 12) -> str:
    """A short hex digest of a JSON-serialisable object (keys sorted, so order does not matter)."""
    blob = json.dumps(obj, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:length]
