"""A registry held low and filled from above, without the low module importing upward.

A registry lives in the lowest module that reads it (``config.SECTIONS`` is read by the config
check, ``io.formats.FORMATS`` by ``io.formats.check_not_input``); the modules that own its entries
sit above it and register them when imported (a method its section, ``export.py`` its formats).
For a low module to read a full registry it must not import those modules itself (that is the
circle), so the top of the package, ``summprune/__init__.py``, which may import anything, adds a
*loader* to each: a function importing the built-ins' modules. The first read of the registry
runs its loaders, once. Importing the low module stays cheap (the loaders import torch only when
the registry is first read), and an entry registered by a user's own module is read like a
built-in one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, MutableMapping
from typing import Any


class Registry(MutableMapping):
    """``name -> entry`` (a mapping); :meth:`add_loader` adds a function that fills it, run before
    the first read."""

    def __init__(self, what: str):
        self.what = what  # named in errors: "export format", "config section"
        self._items: dict[str, Any] = {}
        self._loaders: list[Callable[[], object]] = []

    def add_loader(self, loader: Callable[[], object]) -> None:
        self._loaders.append(loader)

    def _load(self) -> None:
        # taken off the list before it runs: its registrations read the registry (a read from
        # inside the loader must not run it again); put back if it fails, so that every later
        # read fails the same way instead of returning a half-filled registry
        while self._loaders:
            loader = self._loaders.pop(0)
            try:
                loader()
            except BaseException:
                self._loaders.insert(0, loader)
                raise

    def __getitem__(self, name: str) -> Any:
        self._load()
        return self._items[name]

    def __setitem__(self, name: str, entry: Any) -> None:
        self._items[name] = entry

    def __delitem__(self, name: str) -> None:
        self._load()
        del self._items[name]

    def __iter__(self) -> Iterator[str]:
        self._load()
        return iter(list(self._items))

    def __len__(self) -> int:
        self._load()
        return len(self._items)

    def __contains__(self, name: object) -> bool:
        self._load()
        return name in self._items

    def __repr__(self) -> str:
        return f"Registry({self.what!r}, {list(self)})"
