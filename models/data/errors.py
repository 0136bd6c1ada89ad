"""Bad input: one error type that names file, line and field, and a counter for the skip-bad-rows mode."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path


class DataError(ValueError):
    """Raised for malformed input. The message always names the file and, where known, line and field."""

    def __init__(self, path: Path | str, reason: str, line: int | None = None, field: str | None = None):
        self.path = str(path)
        self.line = line
        self.field = field
        self.reason = reason
        where = self.path if line is None else f"{self.path}:{line}"
        what = f" field '{field}':" if field else ""
        super().__init__(f"{where}:{what} {reason}")


@dataclass
class BadRows:
    """Rows skipped under ``--skip-bad-rows``, counted per reason (nothing is dropped silently).

    With ``skip=False`` the first bad row raises ``DataError`` instead of being counted.
    """

    skip: bool = False
    counts: Counter[str] = field(default_factory=Counter)
    examples: dict[str, str] = field(default_factory=dict)  # reason -> first "file:line" seen

    def report(
        self, path: Path | str, line: int, field_name: str | None, reason: str, value: str | None = None
    ) -> None:
        """Count a bad row, or raise when not skipping. The value only goes into the raised message, so
        counts group by reason."""
        if not self.skip:
            shown = "" if value is None else f" (found {value[:80]!r})"
            raise DataError(path, reason + shown, line=line, field=field_name)
        key = f"{field_name}: {reason}" if field_name else reason
        self.counts[key] += 1
        self.examples.setdefault(key, f"{Path(path).name}:{line}")

    @property
    def total(self) -> int:
        return int(sum(self.counts.values()))

    def as_dict(self) -> dict[str, dict[str, int | str]]:
        return {
            reason: {"count": int(count), "first": self.examples[reason]}
            for reason, count in sorted(self.counts.items())
        }
