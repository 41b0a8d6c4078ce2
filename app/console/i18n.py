"""The console's language: Dutch by default, English on request; texts in gettext catalogs.

Templates name messages by id (`drift.title`); both catalogs, `locale/{nl,en}`, give the text,
so no sentence lives in a template. The `.po` files are the source; the `.mo` files beside
them are compiled from them (`python -m app.console.i18n`), and a test keeps them in step.
"""

from __future__ import annotations

import datetime as dt
import io
from functools import lru_cache
from pathlib import Path
from typing import Any

from babel import Locale
from babel.dates import format_datetime
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.numbers import format_decimal
from babel.support import Translations

LOCALE_DIR = Path(__file__).resolve().parent / "locale"
LANGUAGES = ("nl", "en")
DEFAULT = "nl"
LANG_COOKIE = "console_lang"


def pick_language(query: str | None, cookie: str | None, accept_language: str | None) -> str:
    """`?lang=` first, then the remembered choice, then the browser's preference, then Dutch."""
    for choice in (query, cookie):
        if choice in LANGUAGES:
            assert choice is not None
            return choice
    if accept_language:
        wanted = []
        for part in accept_language.split(","):
            tag, _, q = part.strip().partition(";q=")
            try:
                weight = float(q) if q else 1.0
            except ValueError:
                continue
            wanted.append((weight, tag.strip().replace("-", "_")))
        preferred = [tag for _weight, tag in sorted(wanted, key=lambda w: -w[0]) if tag]
        negotiated = Locale.negotiate(preferred, list(LANGUAGES), sep="_")
        if negotiated is not None:
            return str(negotiated.language)
    return DEFAULT


@lru_cache(maxsize=len(LANGUAGES))
def translations(lang: str) -> Translations:
    loaded = Translations.load(str(LOCALE_DIR), [lang], domain="messages")
    assert isinstance(loaded, Translations), f"no compiled catalog for {lang}"
    return loaded


class Texts:
    """What a template calls `_`: a message by id, formatted with its named values."""

    def __init__(self, lang: str, tz: dt.tzinfo) -> None:
        self.lang = lang
        self.tz = tz
        self._gettext = translations(lang).gettext

    def __call__(self, msgid: str, **values: Any) -> str:
        text = self._gettext(msgid)
        return text.format(**values) if values else text

    def when(self, value: dt.datetime | None) -> str:
        if value is None:
            return "-"
        return format_datetime(value, "short", tzinfo=self.tz, locale=self.lang)

    def number(self, value: float | int) -> str:
        return format_decimal(value, locale=self.lang)


def compile_catalog(po_path: Path) -> bytes:
    with po_path.open("rb") as source:
        catalog = read_po(source)
    out = io.BytesIO()
    write_mo(out, catalog)
    return out.getvalue()


def compile_all() -> list[Path]:
    written = []
    for lang in LANGUAGES:
        po = LOCALE_DIR / lang / "LC_MESSAGES" / "messages.po"
        mo = po.with_suffix(".mo")
        mo.write_bytes(compile_catalog(po))
        written.append(mo)
    return written


if __name__ == "__main__":
    for path in compile_all():
        print(path)
