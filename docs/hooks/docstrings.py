"""A Griffe extension (loaded by mkdocstrings, see mkdocs.yml): docstrings as Markdown.

sessionactor's docstrings are written for ``help()`` and doctest: ``>>>`` examples
and reST roles (``:class:`SessionStore```). Read as Markdown, an example becomes
nested block quotes and a role stays literal text. This rewrites each docstring
before it is parsed:

- a ``>>>`` example becomes a fenced ``pycon`` block (``# doctest:`` directives
  dropped, they mean nothing to a reader);
- ``:class:`X``` and the other roles become a link to ``X`` where the site
  documents it, else plain code.
"""

from __future__ import annotations

import re
from typing import Any, Final

import griffe

_ROLE: Final = re.compile(
    r":(?:class|func|meth|attr|exc|mod|data|obj):`(?P<short>~?)(?P<name>[^`]+)`"
)
_DOCTEST_DIRECTIVE: Final = re.compile(r"\s*# doctest:.*$")
_PROMPT: Final = re.compile(r"^(?P<indent> {0,3})>>> ")


def fence_examples(text: str) -> str:
    """Wrap each ``>>>`` example (prompts, continuations, output) in a ``pycon`` fence."""
    lines = text.splitlines()
    result: list[str] = []
    index = 0
    while index < len(lines):
        prompt = _PROMPT.match(lines[index])
        if prompt is None:
            result.append(lines[index])
            index += 1
            continue
        indent = prompt["indent"]
        if result and result[-1].strip():
            result.append("")  # a fence needs a blank line before it inside a paragraph
        result.append(f"{indent}```pycon")
        while index < len(lines) and lines[index].strip():
            result.append(_DOCTEST_DIRECTIVE.sub("", lines[index]))
            index += 1
        result.append(f"{indent}```")
    return "\n".join(result)


def link_roles(text: str, obj: griffe.Object) -> str:
    """Turn reST roles into optional cross-references: a link if the target is documented."""

    def replace(match: re.Match[str]) -> str:
        name = match["name"].strip()
        title = name.rsplit(".", 1)[-1] if match["short"] else name
        return (
            f'<autoref identifier="{_resolve(obj, name)}" optional><code>{title}</code></autoref>'
        )

    return _ROLE.sub(replace, text)


def _resolve(obj: griffe.Object, name: str) -> str:
    """The full path of ``name`` as seen from ``obj`` (``Store.run`` -> ``pkg.mod.Store.run``)."""
    first, _, rest = name.partition(".")
    try:
        resolved = obj.resolve(first)
    except (griffe.NameResolutionError, AttributeError):
        return name
    return f"{resolved}.{rest}" if rest else resolved


def as_markdown(text: str, obj: griffe.Object) -> str:
    """The whole rewrite of one docstring."""
    return link_roles(fence_examples(text), obj)


class DocstringsAsMarkdown(griffe.Extension):
    """Rewrite every sessionactor docstring once the object tree is complete."""

    def on_object(self, *, obj: griffe.Object, loader: griffe.GriffeLoader, **kwargs: Any) -> None:
        if obj.docstring is not None and obj.path.startswith("sessionactor"):
            obj.docstring.value = as_markdown(obj.docstring.value, obj)


class CallReplyTypes(griffe.Extension):
    """Show what each public call returns, not the command its definition builds.

    The store's calls are defined once (``sessionactor/_api.py``) as functions that
    build a command message; the message class says the reply type
    (``class GetVariable(Command[Variable])``). Read from the source, a call would
    appear to return ``GetVariable``; this puts ``Variable`` in its place.
    """

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        if pkg.name != "sessionactor":
            return
        calls = pkg["_api"]["StoreCalls"]
        messages = pkg["messages"]
        for member in calls.members.values():
            if not isinstance(member, griffe.Function):
                continue
            if not any(str(decorator.value) == "call" for decorator in member.decorators):
                continue
            command = messages.members.get(str(member.returns).rsplit(".", 1)[-1])
            if not isinstance(command, griffe.Class):
                continue
            for base in command.bases:
                if isinstance(base, griffe.ExprSubscript) and str(base.left) == "Command":
                    member.returns = base.slice
