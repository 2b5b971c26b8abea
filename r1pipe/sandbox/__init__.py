"""Run untrusted programs against test cases: the engine of the `code` reward.

`LocalSandbox` isolates each test with Linux namespaces on this machine (see `local`);
`Provider` is what a remote code-execution service would implement instead. `make_provider`
builds the one a `SandboxConfig` names.
"""

from r1pipe.sandbox.base import (
    CaseResult,
    CodeTest,
    Provider,
    SandboxConfig,
    SandboxError,
    SandboxUnavailable,
    normalize_output,
    output_matches,
)
from r1pipe.sandbox.local import LocalSandbox


def make_provider(config: SandboxConfig) -> Provider:
    """The provider `config.provider` names (only `local` is shipped)."""
    if config.provider == "local":
        return LocalSandbox(config)
    raise ValueError(f"unknown sandbox provider {config.provider!r}; available: local")


__all__ = [
    "CaseResult",
    "CodeTest",
    "LocalSandbox",
    "Provider",
    "SandboxConfig",
    "SandboxError",
    "SandboxUnavailable",
    "make_provider",
    "normalize_output",
    "output_matches",
]
