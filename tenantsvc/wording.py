"""What people read: counts that agree with their nouns ("1 tenant", never "1 tenants"), and
text from the registry that a terminal shows as written, never as a command to it."""

import unicodedata

# Characters a terminal or a reader takes as something else than text: control codes (ESC
# starts a terminal's escape sequences; a newline or carriage return forges a row), the
# separators of lines and paragraphs, and the bidirectional overrides and isolates that show
# text in an order other than its own ("Trojan Source"). Joiners and spaces other than the
# plain one stay: names are written with them (emoji sequences, "Société Générale").
_BIDI_CONTROLS = frozenset(
    "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
)
_NOT_TEXT_CATEGORIES = frozenset({"Cc", "Zl", "Zp"})


def plural(n: int, one: str, many: str | None = None) -> str:
    """``one`` for 1, else ``many`` (``one`` + "s" unless given): a noun, or a verb to agree."""
    return one if n == 1 else many or one + "s"


def counted(n: int, noun: str, many: str | None = None) -> str:
    return f"{n} {plural(n, noun, many)}"


def not_text(char: str) -> bool:
    return char in _BIDI_CONTROLS or unicodedata.category(char) in _NOT_TEXT_CATEGORIES


def shown(text: str) -> str:
    """``text`` with each such character written as its escape (``\\x1b``, ``\\n``,
    ``\\u202e``): for values stored before the registry refused them, or written into it by
    hand, and for what others put there (the ``application_name`` of a change made outside
    tenantctl)."""
    if not any(map(not_text, text)):
        return text
    return "".join(repr(c)[1:-1] if not_text(c) else c for c in text)
