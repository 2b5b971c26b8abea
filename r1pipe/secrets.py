"""Keep tokens out of everything r1pipe writes: logs, cards, stage state, artifacts.

Why values and not names: a secret leaks when its value is printed, whatever the key it sits
under (a URL with a token, an exception message, a config dumped whole). So any text about to
leave the process is scrubbed of the current values of the known secret variables.
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


def _values() -> list[str]:
    # Short values would mask ordinary words; real tokens are long.
    return sorted({v for name in SECRET_ENV_VARS if len(v := os.environ.get(name, "")) >= 8},
                  key=len, reverse=True)


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
