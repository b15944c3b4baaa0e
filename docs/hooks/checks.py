"""Build-time checks of the documentation site (an mkdocs hook, see mkdocs.yml).

A warning fails ``mkdocs build --strict``, so ``make docs`` fails when the API
reference misses something the package exports: every public name of
``sessionactor`` and ``sessionactor.testing``, and every public method,
property and field of those classes, must have its entry in the built site
(however the class comes by it: written out, inherited or generated).

(That the pages stand alone, citing no internal document, is a test:
``tests/test_docs_examples.py``.)
"""

from __future__ import annotations

import importlib
import inspect
import logging
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any, Final

log = logging.getLogger("mkdocs.hooks.checks")  # under "mkdocs": strict mode counts its warnings

PUBLIC_MODULES: Final = ("sessionactor", "sessionactor.testing")
_ANCHOR: Final = re.compile(r'\bid="([^"]+)"')


def on_post_build(config: Mapping[str, Any], **kwargs: Any) -> None:
    """Warn about every public object that has no entry in the built site."""
    anchors: set[str] = set()
    for page in Path(config["site_dir"]).rglob("*.html"):
        anchors.update(_ANCHOR.findall(page.read_text(encoding="utf-8")))
    missing = [path for path in public_paths() if path not in anchors]
    for path in missing:
        log.warning("the API reference does not document %s (docs/reference/)", path)


def public_paths() -> Iterator[str]:
    """Every public object of the public modules, and every public member of their classes.

    A member counts when a sessionactor class defines it; what comes from
    ``object``, ``Exception``, ``str`` and the like is Python's, not ours.
    """
    for module_name in PUBLIC_MODULES:
        module = importlib.import_module(module_name)
        for name, value in _exports(module):
            path = f"{module_name}.{name}"
            yield path
            if inspect.isclass(value):
                for member in dir(value):
                    owner = _owner(value, member)
                    if not member.startswith("_") and owner.startswith("sessionactor"):
                        yield f"{path}.{member}"


def _exports(module: ModuleType) -> Iterator[tuple[str, object]]:
    """The module's ``__all__``, or else its public classes and functions."""
    names = getattr(module, "__all__", None)
    if names is None:
        names = [
            name
            for name, value in vars(module).items()
            if not name.startswith("_") and (inspect.isclass(value) or inspect.isfunction(value))
        ]
    for name in names:
        yield name, getattr(module, name)


def _owner(cls: type, member: str) -> str:
    """The module of the class in ``cls``'s MRO that defines ``member``."""
    for base in cls.__mro__:
        if member in vars(base):
            return base.__module__
    return ""
