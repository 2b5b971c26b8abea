"""Keep tokens out of everything r1pipe writes: logs, cards, stage state, artifacts.

Why values and not names: a secret leaks when its value is printed, whatever the key it sits
under (a URL with a token, an exception message, a config dumped whole). So any text about to
leave the process is scrubbed of the current values of the known secret variables, and of
the values a pipeline file gives to secret-named keys (`api_key`, `hf_token`, `hub_token`...):
`register_config_secrets` adds those when the file is loaded, so the resolved pipeline.yaml,
stage.json, logs and cards written later all mask them.
"""

from __future__ import annotations

import os
import re
from typing import Any

SECRET_ENV_VARS = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "WANDB_API_KEY", "OPENAI_API_KEY",
                   "ANTHROPIC_API_KEY")
MASK = "***"
# Token shapes worth hiding even when they are not in this process's environment.
_TOKEN_SHAPES = (
    re.compile(r"\bhf_[A-Za-z0-9]{30,}\b"),
    re.compile(r"\bsk-[A-Za-z0-9_-]{20,}\b"),
)
_KEY_NAMES = re.compile(r"(token$|api_?key|secret|password)", re.IGNORECASE)
# Keys that end like a secret but name a vocabulary token (the cold-start separator):
# masking them would hide config values and make every state diff report them changed.
_NOT_SECRET = re.compile(r"(special|pad|eos|bos|unk|sep|cls|mask)_token$", re.IGNORECASE)


_CONFIG_VALUES: set[str] = set()
_MIN_LENGTH = 8  # shorter values would mask ordinary words; real tokens are long


def _values() -> list[str]:
    found = {v for name in SECRET_ENV_VARS if len(v := os.environ.get(name, "")) >= _MIN_LENGTH}
    return sorted(found | _CONFIG_VALUES, key=len, reverse=True)


def config_secrets(tree: Any, path: tuple[str, ...] = ()) -> dict[str, str]:
    """`key.path -> value` of every secret-named key holding a string in a parsed config."""
    found: dict[str, str] = {}
    if isinstance(tree, dict):
        for key, value in tree.items():
            here = (*path, str(key))
            if _secret_key(key) and isinstance(value, str) and value:
                found[".".join(here)] = value
            else:
                found.update(config_secrets(value, here))
    elif isinstance(tree, list):
        for i, value in enumerate(tree):
            found.update(config_secrets(value, (*path, str(i))))
    return found


def register_config_secrets(tree: Any) -> dict[str, str]:
    """Remember the secrets a pipeline file holds, so `scrub` masks them from now on."""
    found = config_secrets(tree)
    _CONFIG_VALUES.update(v for v in found.values() if len(v) >= _MIN_LENGTH)
    return found


def scrub(text: str) -> str:
    """`text` with every known secret value (and token-shaped string) replaced by ***."""
    for value in _values():
        text = text.replace(value, MASK)
    for shape in _TOKEN_SHAPES:
        text = shape.sub(MASK, text)
    return text


def _secret_key(key: Any) -> bool:
    """A key whose string value is a secret: `hf_token`, `api_key`, not `special_token` nor
    `api_key_env` (the name of the variable that holds one)."""
    return (isinstance(key, str) and bool(_KEY_NAMES.search(key)) and not key.endswith("_env")
            and not _NOT_SECRET.search(key))


def scrub_obj(obj: Any) -> Any:
    """A copy of a JSON-able object with secret values masked and secret-named keys hidden."""
    if isinstance(obj, dict):
        return {k: (MASK if _secret_key(k) and isinstance(v, str) and v else scrub_obj(v))
                for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [scrub_obj(v) for v in obj]
    if isinstance(obj, str):
        return scrub(obj)
    return obj


def mask_secret_keys(obj: Any) -> Any:
    """A copy with the values of secret-named keys replaced by *** and nothing else changed
    (`config_secrets` of the original gives them back exactly)."""
    if isinstance(obj, dict):
        return {k: (MASK if _secret_key(k) and isinstance(v, str) and v else mask_secret_keys(v))
                for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [mask_secret_keys(v) for v in obj]
    return obj
