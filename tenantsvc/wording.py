"""Counts in what people read: "1 tenant", "2 tenants", never "1 tenants"."""


def plural(n: int, one: str, many: str | None = None) -> str:
    """``one`` for 1, else ``many`` (``one`` + "s" unless given): a noun, or a verb to agree."""
    return one if n == 1 else many or one + "s"


def counted(n: int, noun: str, many: str | None = None) -> str:
    return f"{n} {plural(n, noun, many)}"
