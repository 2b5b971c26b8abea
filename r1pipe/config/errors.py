"""Errors a person acts on: `BadInput` (exit code 2, one line) and the config's located
`ConfigError`s.

`BadInput` lives here, at the configuration layer, because the first input a person gets
wrong is the pipeline file: the config's errors derive from it, and `r1pipe.contract` (a
layer below) re-exports it for the engine and the stages without the config ever importing
the contract.
"""

from __future__ import annotations


class BadInput(ValueError):
    """Input a person must fix (a config, a data file, an argument): the CLI prints it as one
    line and exits 2, and the engine passes it on as it is instead of wrapping it as a
    failed stage."""


class ConfigError(BadInput):
    """A config problem with its location; printed as one line by the CLI (exit code 2)."""

    def __init__(self, message: str, *, file: str | None = None, line: int | None = None,
                 key: str | None = None) -> None:
        self.message = message
        self.file = file
        self.line = line
        self.key = key
        super().__init__(self.one_line())

    def one_line(self) -> str:
        where = self.file or "<config>"
        if self.line is not None:
            where += f":{self.line}"
        key = f" {self.key}:" if self.key else ""
        return f"{where}:{key} {self.message}"


class ConfigErrors(ConfigError):
    """Several independent problems of one file, found in one pass, so a YAML with five
    mistakes takes one round trip; `one_line()` gives one line per problem. A subclass of
    `ConfigError`, so every caller that reports one error reports these too."""

    def __init__(self, errors: list[ConfigError]) -> None:
        self.errors = list(errors)
        first = self.errors[0]
        super().__init__(first.message, file=first.file, line=first.line, key=first.key)

    def one_line(self) -> str:
        return "\n".join(e.one_line() for e in getattr(self, "errors", ())) or \
            super().one_line()

    @classmethod
    def of(cls, errors: list[ConfigError]) -> ConfigError:
        """One error as itself, several as a `ConfigErrors` (sorted by line, duplicates
        dropped)."""
        unique = list({e.one_line(): e for e in errors}.values())
        unique.sort(key=lambda e: (e.file or "", e.line or 0))
        return unique[0] if len(unique) == 1 else cls(unique)
