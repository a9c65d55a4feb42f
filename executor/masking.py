"""Mask secrets before anything leaves the process or is stored.

    masker = Masker(patterns=[r"ACME-\\d{6}"])
    masker.mask({"api_key": "sk-proj-abc...", "url": "https://u:hunter2@db.example/x", "ref": "ACME-123456"})
    # {"api_key": "[REDACTED]", "url": "https://u:[REDACTED]@db.example/x", "ref": "[REDACTED]"}

Three kinds of rules, all applied by `Masker.mask` while it walks dicts, lists and strings:

- **secret-looking keys**: the whole value of a key named like a secret (`password`,
  `api_key`, `Authorization`, `access_token`, `client_secret`, `Cookie`, ...) is replaced,
  whatever its type. Counters such as `max_tokens` or `input_tokens` are not secrets.
- **secret-looking text** anywhere in a string: provider API keys (`sk-...`, `AKIA...`,
  `AIza...`, `ghp_...`, `xoxb-...`, `hf_...`), bearer and basic credentials, JWTs, PEM
  private keys, passwords in URLs (`scheme://user:PASSWORD@host`) and `name=value`
  pairs whose name looks like a secret (`?api_key=...`, `password: ...`).
- **yours**: regular expressions (`patterns=`; a group named `secret` masks only that
  part of the match), extra key names (`keys=`, regexes searched in the key) and literal
  values (`values=`, e.g. the API key the run was configured with).
- **known values** (`Masker.from_env`, `Masker.remember`): the value of every environment
  variable named like a key (`OPENAI_API_KEY`, `HF_TOKEN`, `AWS_SECRET_ACCESS_KEY`,
  `DB_PASSWORD`, ...: `secret_env_values`), whatever it looks like, and the values of a
  run's secret inputs (`SecretInputs`), so a provider or a tool that echoes one is masked too.

Secret run inputs never reach the model: `SecretInputs.for_prompt` shows each as a
placeholder that names its reference (`${inputs.api_token}`), the executor substitutes the
real value only into the arguments of the tool call, and `values_only()` masks every message
sent to the model by the known values, as a last line (see `docs/security.md`).

The result is a masked copy: containers are rebuilt, the input is never changed.
pydantic models and dataclasses are masked as the dicts they dump to; other objects are
returned as they are. The run store and the Langfuse tracer both mask through this.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import BaseModel

from planweave.tools.errors import SetupError

__all__ = [
    "DEFAULT_PATTERNS", "MASK_PATTERNS_ENV", "REDACTED", "Masker", "SecretInputs", "is_secret_env_name",
    "secret_env_values",
]

REDACTED = "[REDACTED]"
MASK_PATTERNS_ENV = "PLANWEAVE_MASK_PATTERNS"
"""Extra patterns from the environment: one regular expression, or a JSON list of them."""

_TOKEN_CHARS = r"[A-Za-z0-9._~+/=-]"
_NAME_WORDS = r"password|passwd|passphrase|secret|token|api[_-]?key|access[_-]?key|private[_-]?key|auth(?:orization)?"

DEFAULT_PATTERNS: tuple[str, ...] = (
    # PEM private keys (RSA, EC, OpenSSH, ...).
    r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----",
    # Credentials after an HTTP auth scheme. The look-ahead wants a digit or symbol so that
    # prose ("a basic understanding") is left alone.
    rf"(?i:\b(?:bearer|basic)\s+)(?P<secret>(?={_TOKEN_CHARS}*[0-9+/=._~-]){_TOKEN_CHARS}{{8,}})",
    # Provider keys with a recognisable prefix.
    r"\bsk-(?:proj-|ant-|lf-|or-|svcacct-)?[A-Za-z0-9_-]{16,}",
    r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b",
    r"\bAIza[0-9A-Za-z_-]{35}",
    r"\b(?:gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{30,})",
    r"\bxox[abposr]-[A-Za-z0-9-]{10,}",
    r"\b[rs]k_(?:live|test)_[A-Za-z0-9]{16,}",
    r"\b(?:hf|gsk)_[A-Za-z0-9]{20,}",
    # JSON Web Tokens.
    r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}",
    # A password in a URL: scheme://user:PASSWORD@host
    r"\b[a-z][a-z0-9+.-]*://[^:/\s@]+:(?P<secret>[^@/\s]+)@",
    # name=value / name: value, where the name looks like a secret (query strings, env files, logs).
    rf"(?i:\b[\w-]*(?:{_NAME_WORDS})\b[\"']?\s*[:=]\s*[\"']?)(?P<secret>(?!\[REDACTED\]|(?i:bearer|basic)\s)[^\s\"'&,;}}]+)",
)

# Keys whose value is a secret. A key is split into words ("X-Api-Key" -> x, api, key;
# "accessToken" -> access, token); adjacent words are also joined ("apikey").
_SECRET_WORDS = frozenset(
    {
        "password", "passwd", "passphrase", "pwd", "secret", "secrets", "credential", "credentials",
        "authorization", "apikey", "privatekey", "secretkey", "cookie", "jwt",
    }
)  # fmt: skip
# ... and keys that *end* like a secret ("access_token", "basic_auth"); only as a suffix,
# so that "token_count" or "max_tokens" stay readable.
_SECRET_SUFFIXES = ("token", "auth", "bearer", "accesskey", "sessionkey", "apikey", "secret", "password")
_WORD_RE = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")
_MIN_TEXT = 6  # no rule can match a shorter string
_MIN_LITERAL = 6  # shorter literal values would mask ordinary words
_MAX_REMEMBERED = 4096  # literal values a long-lived masker keeps (a server remembers each run's secrets)

# Environment variables whose value is a credential, by the words of their name (split at `_`):
# litellm's provider keys (`OPENAI_API_KEY`, `AZURE_AD_TOKEN`, `WATSONX_APIKEY`, `CLARIFAI_PAT`,
# `SNOWFLAKE_JWT`, `AWS_BEARER_TOKEN_BEDROCK`, `GIGACHAT_CREDENTIALS`), cloud secrets, passwords.
_ENV_SECRET_WORDS = frozenset(
    {
        "KEY", "APIKEY", "ZENAPIKEY", "TOKEN", "SECRET", "PASSWORD", "PASSWD", "PASS", "PWD", "PAT", "JWT",
        "CREDENTIAL", "CREDENTIALS", "PASSPHRASE",
    }
)  # fmt: skip
# ... unless the name ends by saying it holds something else: where the secret is, or a setting about it.
_ENV_NOT_SECRET_ENDINGS = frozenset(
    {
        "FILE", "PATH", "DIR", "URL", "URI", "HOST", "ENDPOINT", "NAME", "VERSION", "ENABLED", "TTL", "SECONDS",
        "LIMIT", "FIELD", "ROUTES", "HEADER", "TYPE", "MODE", "COUNT", "SIZE", "ALIAS", "REGION", "AUDIENCE",
        "ISSUER", "INTERVAL",
    }
)  # fmt: skip
_ENV_NOT_SECRET_NAMES = frozenset({"PWD", "OLDPWD"})  # the shell's working directories, not passwords
_MIN_ENV_SECRET = 8  # shorter values are flags and ports, not keys


class Masker:
    """Replaces secrets with `[REDACTED]` in strings, dicts, lists, models and dataclasses.

    Args:
        patterns: extra regular expressions to mask (strings or compiled); a group named
            `secret` masks only that part of each match.
        keys: extra key names whose values are always masked (regexes, searched
            case-insensitively in the key).
        values: literal secrets to mask wherever they appear (shorter than 6 characters: ignored).
        defaults: apply the built-in rules (`DEFAULT_PATTERNS` and secret-looking keys).
        replacement: what a secret becomes.
        max_depth: deeper nesting is replaced by `replacement` (protects against cycles).

    A `Masker` is callable: `masker(value)` is `masker.mask(value)`.
    """

    def __init__(
        self,
        patterns: Iterable[str | re.Pattern[str]] = (),
        *,
        keys: Iterable[str] = (),
        values: Iterable[str] = (),
        defaults: bool = True,
        replacement: str = REDACTED,
        max_depth: int = 64,
    ) -> None:
        self.replacement = replacement
        self.max_depth = max_depth
        self.defaults = defaults
        self._user_patterns = [_compile(p, "pattern") for p in patterns]
        self._key_patterns = [_compile(k, "key pattern", re.IGNORECASE) for k in keys]
        self._values = sorted({v for v in values if isinstance(v, str) and len(v) >= _MIN_LITERAL}, key=len, reverse=True)
        rules = [re.compile(p) for p in DEFAULT_PATTERNS] if defaults else []
        self._literal_rule: re.Pattern[str] | None = None
        if self._values:
            self._literal_rule = re.compile("|".join(re.escape(v) for v in self._values))
            rules.append(self._literal_rule)
        self._rules: list[re.Pattern[str]] = [*rules, *self._user_patterns]
        self._key_cache: dict[str, bool] = {}

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **kwargs: Any) -> Masker:
        """A masker with the default rules plus the patterns in `PLANWEAVE_MASK_PATTERNS`
        (one regular expression, or a JSON list of them), and the values of the environment's
        keys and passwords (`secret_env_values`): masked wherever they appear, prefix or not."""
        env = os.environ if environ is None else environ
        kwargs["values"] = [*kwargs.get("values", ()), *secret_env_values(env)]
        raw = env.get(MASK_PATTERNS_ENV, "").strip()
        patterns: list[str | re.Pattern[str]] = list(kwargs.pop("patterns", ()))
        if raw:
            if raw.startswith("["):
                try:
                    loaded = json.loads(raw)
                except ValueError as exc:
                    raise SetupError(
                        f"`{MASK_PATTERNS_ENV}` starts with `[` but is not a JSON list ({exc}); "
                        'write it as ["pattern", ...] or as one plain regular expression.'
                    ) from None
                if not isinstance(loaded, list) or not all(isinstance(p, str) for p in loaded):
                    raise SetupError(f'`{MASK_PATTERNS_ENV}` must be a JSON list of strings, like ["ACME-\\\\d+"].')
                patterns += loaded
            else:
                patterns.append(raw)
        return cls(patterns, **kwargs)

    def with_values(self, *values: str | None) -> Masker:
        """A copy that also masks these literal values (None and short values are ignored)."""
        clone = Masker(
            self._user_patterns,
            keys=[p.pattern for p in self._key_patterns],
            values=[*self._values, *(v for v in values if v)],
            defaults=self.defaults,
            replacement=self.replacement,
            max_depth=self.max_depth,
        )
        return clone

    def remember(self, *values: str | None) -> None:
        """Mask these literal values too, from now on, in this masker itself (and in the copies made
        after this call): for secrets learnt while running, such as a run's secret inputs, that the
        run store and tracer holding this masker must mask. Keeps the most recent 4096 values."""
        fresh = [v for v in values if isinstance(v, str) and len(v) >= _MIN_LITERAL and v not in self._values]
        if not fresh:
            return
        kept = [*self._values, *fresh][-_MAX_REMEMBERED:]
        rules = [r for r in self._rules if r is not self._literal_rule]
        literal = re.compile("|".join(re.escape(v) for v in sorted(kept, key=len, reverse=True)))
        at = len(rules) - len(self._user_patterns)  # before the user's patterns, as in `__init__`
        # Swapped whole, so a thread masking meanwhile sees the old rules or the new, never half.
        self._values = sorted(kept, key=len, reverse=True)
        self._rules, self._literal_rule = [*rules[:at], literal, *rules[at:]], literal

    def values_only(self, replacement: str | None = None) -> Masker:
        """A masker of this one's literal values alone (no patterns, no key names): what the model
        is shown must keep its text, and lose only the secrets that are known for sure."""
        return Masker(values=self._values, defaults=False, replacement=replacement or self.replacement)

    # --- masking ------------------------------------------------------------------------------

    def __call__(self, value: Any) -> Any:
        return self.mask(value)

    def mask(self, value: Any) -> Any:
        """A masked copy of `value` (strings, numbers, None, dicts, lists, tuples, sets,
        pydantic models and dataclasses; other objects are returned unchanged)."""
        return self._walk(value, 0)

    def mask_text(self, text: str) -> str:
        """`text` with every secret-looking part replaced."""
        if len(text) < _MIN_TEXT:
            return text
        for rule in self._rules:
            text = rule.sub(self._replace, text)
        return text

    def is_secret_key(self, key: str) -> bool:
        """Whether the value stored under `key` is masked as a whole."""
        known = self._key_cache.get(key)
        if known is None:
            known = self._judge_key(key)
            if len(self._key_cache) < 10_000:
                self._key_cache[key] = known
        return known

    def _judge_key(self, key: str) -> bool:
        if any(p.search(key) for p in self._key_patterns):
            return True
        if not self.defaults:
            return False
        words = [w.lower() for w in _WORD_RE.findall(key)]
        joined = {a + b for a, b in zip(words, words[1:], strict=False)}
        if _SECRET_WORDS.intersection(words) or _SECRET_WORDS.intersection(joined):
            return True
        squashed = "".join(words)
        return squashed.endswith(_SECRET_SUFFIXES)

    def _replace(self, match: re.Match[str]) -> str:
        if "secret" in match.re.groupindex and match.group("secret") is not None:
            start, end = match.span("secret")
            offset = match.start()
            whole = match.group(0)
            return whole[: start - offset] + self.replacement + whole[end - offset :]
        return self.replacement

    def _walk(self, value: Any, depth: int) -> Any:
        if isinstance(value, str):
            return self.mask_text(value)
        if value is None or isinstance(value, (bool, int, float)):
            return value
        if depth >= self.max_depth:
            return self.replacement
        if isinstance(value, Mapping):
            out: dict[Any, Any] = {}
            for k, v in value.items():
                if isinstance(k, str) and v not in (None, "") and self.is_secret_key(k):
                    out[k] = self.replacement
                else:
                    out[k] = self._walk(v, depth + 1)
            return out
        if isinstance(value, (list, tuple)):
            items = [self._walk(v, depth + 1) for v in value]
            return items if isinstance(value, list) else tuple(items)
        if isinstance(value, (set, frozenset)):
            return [self._walk(v, depth + 1) for v in value]
        if isinstance(value, BaseModel):
            return self._walk(value.model_dump(mode="json"), depth + 1)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            return self._walk({f.name: getattr(value, f.name) for f in dataclasses.fields(value)}, depth + 1)
        return value


def _compile(pattern: str | re.Pattern[str], what: str, flags: int = 0) -> re.Pattern[str]:
    if isinstance(pattern, re.Pattern):
        return pattern
    try:
        return re.compile(pattern, flags)
    except re.error as exc:
        raise SetupError(
            f"mask {what} `{pattern}` is not a valid regular expression ({exc}); fix it, or escape it with `re.escape`."
        ) from None


def is_secret_env_name(name: str) -> bool:
    """Whether an environment variable named `name` holds a credential (`OPENAI_API_KEY`,
    `HF_TOKEN`, `DB_PASSWORD`: yes; `MAX_TOKENS`, `SSL_CERT_FILE`, `AZURE_AUTHORITY_HOST`: no)."""
    words = [w for w in re.split(r"[_\W]+", name.upper()) if w]
    if not words or words[-1] in _ENV_NOT_SECRET_ENDINGS or name.upper() in _ENV_NOT_SECRET_NAMES:
        return False
    return any(w in _ENV_SECRET_WORDS for w in words) or words[-1].endswith(("APIKEY", "TOKEN", "SECRET", "PASSWORD"))


def secret_env_values(environ: Mapping[str, str] | None = None) -> list[str]:
    """The values of the environment's credentials (`is_secret_env_name`), 8 characters or longer:
    every key planweave or litellm may read from the environment, whatever its provider's prefix."""
    env = os.environ if environ is None else environ
    return [v.strip() for k, v in env.items() if len(v.strip()) >= _MIN_ENV_SECRET and is_secret_env_name(k)]


_PLACEHOLDER = "[secret input: its value is hidden from you; write `${{inputs.{name}}}` where a tool needs it]"


class SecretInputs:
    """The secret ones among a run's inputs, and how each is shown and masked.

    An input is secret when its name looks like a secret (`api_token`, `password`, by the
    masker's key rules) or its value holds secret-looking text (an `sk-...` key, a password in a
    URL). The model sees a placeholder naming the reference instead (`for_prompt`); a tool gets
    the real value through that reference, which the executor resolves at call time; the values
    are masked by value everywhere after `remember_in` (store, traces, prompts).

        secrets = SecretInputs({"api_token": "tok-123456", "city": "Paris"}, masker)
        secrets.names                  # {"api_token"}
        secrets.for_prompt()           # {"api_token": "[secret input: ... `${inputs.api_token}` ...]", "city": "Paris"}
        secrets.remember_in(masker)    # the store and tracer holding `masker` now mask "tok-123456"
    """

    def __init__(self, inputs: Mapping[str, Any], masker: Masker) -> None:
        self.inputs = dict(inputs)
        self.masker = masker
        self.names: set[str] = set()
        self.values: list[str] = []
        for name, value in self.inputs.items():
            if masker.is_secret_key(name) and value not in (None, ""):
                self.names.add(name)
                self.values += _texts(value)
            elif found := _secret_texts(value, masker):
                self.names.add(name)
                self.values += found

    def for_prompt(self) -> dict[str, Any]:
        """The inputs as the model may see them: a secret one as a placeholder naming its
        reference, the others masked (a nested `password` field, a key inside a text)."""
        return {
            name: _PLACEHOLDER.format(name=name) if name in self.names else self.masker.mask(value)
            for name, value in self.inputs.items()
        }

    def remember_in(self, masker: object) -> None:
        """From now on `masker` masks these values wherever they appear (anything but a `Masker`: nothing)."""
        if isinstance(masker, Masker):
            masker.remember(*self.values)


def _secret_texts(value: Any, masker: Masker, depth: int = 0) -> list[str]:
    """The secret strings inside `value`: under a secret-looking key, or secret-looking themselves."""
    if isinstance(value, str):
        return [value] if masker.mask_text(value) != value else []
    if depth > 32:
        return []
    if isinstance(value, Mapping):
        found: list[str] = []
        for k, v in value.items():
            secret_key = isinstance(k, str) and v not in (None, "") and masker.is_secret_key(k)
            found += _texts(v, depth + 1) if secret_key else _secret_texts(v, masker, depth + 1)
        return found
    if isinstance(value, (list, tuple, set, frozenset)):
        return [t for v in value for t in _secret_texts(v, masker, depth + 1)]
    return []


def _texts(value: Any, depth: int = 0) -> list[str]:
    """Every string (and long number) inside `value`: the literal values to mask."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return [str(value)]
    if depth > 32:
        return []
    if isinstance(value, Mapping):
        return [t for v in value.values() for t in _texts(v, depth + 1)]
    if isinstance(value, (list, tuple, set, frozenset)):
        return [t for v in value for t in _texts(v, depth + 1)]
    return []
