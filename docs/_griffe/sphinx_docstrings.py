"""Griffe extension used by the docs build: tidy Sphinx-style docstrings for mkdocstrings.

The provider's docstrings use Sphinx field lists (``:param x:``) and cross-reference
roles (``:class:`~pkg.mod.Name```). The API reference reads them with griffe, without
importing anything, and griffe's Sphinx parser has two habits this file works around:

* roles are left as literal text; here they become autorefs links, marked optional so a
  target that is not rendered in the reference shows as plain code instead of failing
  the strict build;
* a paragraph written after the field list is swallowed by the last field; here such
  paragraphs are moved above the field list, where they belong in the rendered page.

Only the text handed to the renderer changes; the source files are never touched.
"""

from __future__ import annotations

import re
from typing import Any

from griffe import Alias, Extension, Object

_ROLE = re.compile(r":(?:py:)?(?:class|func|meth|mod|attr|data|exc|obj):`(?P<tilde>~?)(?P<target>[^`]+)`")
_FIELD = re.compile(
    r"^:(?:param|parameter|arg|argument|key|keyword|type|raises?|raise|except|exception|"
    r"var|ivar|cvar|vartype|returns?|rtype|yields?|ytype)\b"
)


def _resolve(obj: Object | Alias, name: str) -> str | None:
    """Full path of a name used in ``obj``'s docstring, if it can be found without guessing."""
    if "." in name:
        return name
    scopes = [obj]
    parent = obj.parent
    while parent is not None:
        scopes.append(parent)
        parent = parent.parent
    for scope in scopes:
        try:
            member = scope.members.get(name)
        except Exception:  # aliases that cannot be resolved have no members
            member = None
        if member is None:
            continue
        if isinstance(member, Alias):
            return member.target_path
        return member.path
    return None


def _link(obj: Object | Alias, match: re.Match[str]) -> str:
    target = match["target"].strip()
    shown = target.rsplit(".", 1)[-1] if match["tilde"] else target
    path = _resolve(obj, target)
    if path is None:
        return f"`{shown}`"
    return f'<autoref identifier="{path}" optional><code>{shown}</code></autoref>'


def _fields_last(text: str) -> str:
    """Move prose that follows a field list above it, keeping every line's content."""
    prose: list[str] = []
    fields: list[str] = []
    in_field = False
    for line in text.splitlines():
        if _FIELD.match(line):
            in_field = True
            fields.append(line)
        elif in_field and line[:1].isspace() and line.strip():
            fields.append(line)
        else:
            in_field = False
            prose.append(line)
    if not fields:
        return text
    while prose and not prose[-1].strip():
        prose.pop()
    collapsed: list[str] = []
    for line in prose:
        if not line.strip() and collapsed and not collapsed[-1].strip():
            continue
        collapsed.append(line)
    return "\n".join([*collapsed, "", *fields]) if collapsed else "\n".join(fields)


class SphinxDocstrings(Extension):
    """Rewrite roles and field order of every docstring once the object tree is loaded."""

    def on_object(self, *, obj: Object, **kwargs: Any) -> None:
        docstring = obj.docstring
        if docstring is None:
            return
        text = _ROLE.sub(lambda match: _link(obj, match), docstring.value)
        docstring.value = _fields_last(text)
