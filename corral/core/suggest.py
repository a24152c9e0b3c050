"""The closest valid name to a mistyped one, for one-line errors (``did you mean 'cluster'?``)."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def closest(name: str, valid: Iterable[str]) -> str | None:
    """The valid name most like ``name``, when one is close enough to be a likely typo."""
    found = difflib.get_close_matches(str(name), list(valid), n=1, cutoff=0.6)
    return found[0] if found else None


def did_you_mean(name: str, valid: Iterable[str]) -> str:
    """``" (did you mean 'x'?)"`` when a valid name is close to ``name``, else ``""``."""
    match = closest(name, valid)
    return f" (did you mean {match!r}?)" if match is not None else ""
