"""Topic patterns with named wildcards: `amr/+meter/readings`, `site/+id/#rest`.

`TopicPattern.parse(text)` gives the MQTT subscription filter (`amr/+/readings`) and a matcher
that returns the captured levels by name, or None when a topic does not match.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True, slots=True)
class TopicPattern:
    """A parsed pattern: the filter to subscribe to and the captures it yields."""

    text: str
    filter: str
    levels: tuple[str | None, ...]  # literal level, or None for a wildcard level
    names: tuple[str, ...]  # capture names in order ("" for an unnamed wildcard)
    positions: tuple[int, ...]  # level index of each wildcard
    multi: bool  # ends with '#'

    @classmethod
    def parse(cls, text: str) -> TopicPattern:
        """Parse `text`; raise ValueError naming the bad level."""
        if not text:
            raise ValueError("empty topic pattern")
        parts = text.split("/")
        levels: list[str | None] = []
        names: list[str] = []
        positions: list[int] = []
        filt: list[str] = []
        multi = False
        for i, part in enumerate(parts):
            if part.startswith(("+", "#")):
                name = part[1:]
                if name and not _NAME.match(name):
                    raise ValueError(f"level {i} ({part!r}): capture name must be an identifier")
                if part[0] == "#":
                    if i != len(parts) - 1:
                        raise ValueError(f"level {i} ({part!r}): '#' must be the last level")
                    multi = True
                if name in names and name:
                    raise ValueError(f"level {i} ({part!r}): capture name {name!r} used twice")
                names.append(name)
                positions.append(i)
                levels.append(None)
                filt.append(part[0])
            else:
                if "+" in part or "#" in part:
                    raise ValueError(f"level {i} ({part!r}): wildcards must fill a whole level")
                levels.append(part)
                filt.append(part)
        return cls(text=text, filter="/".join(filt), levels=tuple(levels), names=tuple(names),
                   positions=tuple(positions), multi=multi)

    def match(self, topic: str) -> tuple[str, ...] | None:
        """The captured values (one per wildcard, in order) or None when `topic` does not match."""
        parts = topic.split("/")
        n = len(self.levels)
        if self.multi:
            if len(parts) < n - 1:  # 'a/#' also matches 'a'
                return None
        elif len(parts) != n:
            return None
        out: list[str] = []
        for i, lit in enumerate(self.levels):
            if lit is not None:
                if parts[i] != lit:
                    return None
            elif self.multi and i == n - 1:
                out.append("/".join(parts[i:]))
            else:
                out.append(parts[i])
        return tuple(out)

    def named(self, captured: tuple[str, ...]) -> dict[str, str]:
        """Captures by name (unnamed wildcards are left out)."""
        return {k: v for k, v in zip(self.names, captured, strict=True) if k}
