"""One registry type for every extension point (losses, nets, domains, families, feature extractors):
a name maps to an entry, an unknown name is one UsageError that lists the names, with the closest
one suggested."""

from __future__ import annotations

import difflib
from typing import TypeVar

from ganforge.errors import UsageError

T = TypeVar("T")


class Registry(dict[str, T]):
    """``name -> entry``; ``what`` names the option in errors (e.g. ``"loss"``, ``"model.family"``)."""

    def __init__(self, what: str) -> None:
        super().__init__()
        self.what = what

    def register(self, name: str, entry: T) -> T:
        self[name] = entry
        return entry

    def get_entry(self, name: str) -> T:
        if name not in self:
            close = difflib.get_close_matches(str(name), list(self), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise UsageError(f"unknown {self.what} '{name}'{hint}; choose one of {', '.join(self)}")
        return self[name]
