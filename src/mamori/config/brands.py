"""Config of the brand watch: ``[[brand]]`` tables (the user's TOML and the console's
overlay)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from mamori.config.tables import Ctx, tables
from mamori.config.values import InvalidValueError
from mamori.errors import ConfigError

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,63}$")
_KEYWORD = re.compile(r"^[^\s.,/\\]{3,63}$")


@dataclass(frozen=True)
class BrandConfig:
    """One ``[[brand]]``: *domains* are the brand's registrable domains (A-labels, lowercase,
    no final dot); *keywords* words a look-alike may contain (lowercase, 3+ characters;
    left out: the domains' first labels of 4+ characters)."""

    name: str = ""
    domains: tuple[str, ...] = ()
    keywords: tuple[str, ...] | None = None

    def words(self) -> tuple[str, ...]:
        """The keywords in effect."""
        if self.keywords is not None:
            return self.keywords
        labels = {_unicode(d.split(".")[0]) for d in self.domains}
        return tuple(sorted(x for x in labels if len(x) >= 4 or not x.isascii()))


def _unicode(label: str) -> str:
    if label.startswith("xn--"):
        try:
            return label[4:].encode("ascii").decode("punycode")
        except UnicodeError:
            return label
    return label


def _name(raw: Any, _ctx: Any, _rc: str) -> str:
    if not isinstance(raw, str) or not _NAME.match(raw):
        raise InvalidValueError("a name of letters, digits, space, '.', '_' or '-' (1-64)")
    return raw


def domain(raw: Any) -> str:
    """A registrable domain as the watch keeps it (A-labels); InvalidValueError if it is
    not one (a public suffix, a subdomain, not a name)."""
    from publicsuffixlist import PublicSuffixList

    if not isinstance(raw, str) or not raw.strip(". "):
        raise InvalidValueError("must be a domain name like example.com")
    text = raw.strip().rstrip(".").lower()
    try:
        text = text.encode("idna").decode("ascii")
    except UnicodeError:
        raise InvalidValueError(f"{raw!r} is not a valid domain name") from None
    registrable = PublicSuffixList().privatesuffix(text)
    if registrable is None:
        raise InvalidValueError(f"{raw!r} is a public suffix, not a registrable domain")
    if registrable != text:
        raise InvalidValueError(f"{raw!r} is below {registrable}: give the registrable domain")
    return text


def _domains(raw: Any, _ctx: Any, _rc: str) -> tuple[str, ...]:
    items = [raw] if isinstance(raw, str) else raw
    if not isinstance(items, list) or not items:
        raise InvalidValueError('list the brand\'s domains: ["example.com", ...]')
    return tuple(dict.fromkeys(domain(x) for x in items))


def keyword(raw: Any) -> str:
    if not isinstance(raw, str) or not _KEYWORD.match(raw.lower()):
        raise InvalidValueError("keywords are words of 3-63 characters (no space, dot, comma)")
    return raw.lower()


def _keywords(raw: Any, _ctx: Any, _rc: str) -> tuple[str, ...]:
    items = [raw] if isinstance(raw, str) else raw
    if not isinstance(items, list):
        raise InvalidValueError("must be a list of words")
    return tuple(dict.fromkeys(keyword(x) for x in items))


CONVERTERS: dict[tuple[str, str], Any] = {
    ("brand", "name"): _name,
    ("brand", "domains"): _domains,
    ("brand", "keywords"): _keywords,
}


def build_brands(ctx: Ctx, value: Any) -> tuple[BrandConfig, ...]:
    """``[[brand]]`` tables, checked (errors name the file, line and key)."""
    out: list[BrandConfig] = []
    for i, brand in enumerate(tables(ctx, value, "brand", BrandConfig, CONVERTERS)):
        where = ctx.line("brand", None, i)
        if not brand.name:
            raise ConfigError(ctx.path, where, "brand.name", "missing name")
        if not brand.domains:
            raise ConfigError(ctx.path, where, "brand.domains", 'list domains = ["example.com"]')
        twin = next((b for b in out if b.name.casefold() == brand.name.casefold()), None)
        if twin is not None:
            also = "" if twin.name == brand.name else f" (as {twin.name}: names ignore case)"
            raise ctx.error("brand", "name", f"brand {brand.name} is listed twice{also}", i)
        out.append(brand)
    return tuple(out)


__all__ = ["CONVERTERS", "BrandConfig", "build_brands", "domain", "keyword"]
