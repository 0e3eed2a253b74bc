"""Errors a user can cause, each rendered as one line that names the key, the allowed values and the bad value."""

from __future__ import annotations

from collections.abc import Iterable


class MetarayError(Exception):
    """Base class of every error metaray raises on purpose; the CLI prints it and exits with status 2."""


class SpecError(MetarayError, ValueError):
    """A spec value or an input that cannot be used.

    Args:
        key: dotted spec key the problem belongs to, e.g. ``subsets.fraction``.
        problem: what is wrong, in words.
        allowed: the values or range that would be accepted.
        got: the value that was given.

    Example:
        >>> str(SpecError("subsets.sampler", "unknown sampler", allowed=["kfold", "subsample"], got="foo"))
        "subsets.sampler: unknown sampler; allowed: 'kfold', 'subsample'; got: 'foo'"
    """

    _MISSING = object()

    def __init__(self, key: str, problem: str, *, allowed: Iterable | str | None = None, got=_MISSING):
        self.key, self.problem, self.got = key, problem, got
        self.allowed = allowed if allowed is None or isinstance(allowed, str) else list(allowed)
        super().__init__(str(self))

    def __str__(self) -> str:
        parts = [f"{self.key}: {self.problem}" if self.key else self.problem]
        if self.allowed is not None:
            allowed = self.allowed if isinstance(self.allowed, str) else ", ".join(map(repr, self.allowed))
            parts.append(f"allowed: {allowed}")
        if self.got is not self._MISSING:
            parts.append(f"got: {self.got!r}")
        return "; ".join(parts)

    def __reduce__(self):  # keeps the error intact when Ray ships it between processes
        return (_rebuild_spec_error, (self.key, self.problem, self.allowed, self.got))


def _rebuild_spec_error(key, problem, allowed, got, cls=None):
    return (cls or SpecError)(key, problem, allowed=allowed, got=got)


class RejectedValue(SpecError):
    """A hyperparameter value the estimator itself refuses (its own validation), as opposed to a name it does not
    know: in a search space, a sampled value may be rejected while the space is sound."""

    def __reduce__(self):
        return (_rebuild_spec_error, (self.key, self.problem, self.allowed, self.got, RejectedValue))


class FitError(MetarayError):
    """A subset fit raised: the configuration is invalid for this data (or its loss diverged)."""


def warning_kind(message: str) -> str:
    """A warning without its numbers: what makes two warnings the same one, said once (an ill-conditioned matrix's
    ``rcond`` differs from fit to fit, and each fit's was said before).

    Example:
        >>> warning_kind("LinAlgWarning: rcond = 4.41e-17.") == warning_kind("LinAlgWarning: rcond = 7.5e-19.")
        True
        >>> warning_kind("lbfgs failed to converge after 100 iteration(s)")
        'lbfgs failed to converge after # iteration(s)'
        >>> warning_kind("x1 cast to float32") == warning_kind("x2 cast to float64")  # names keep their digits
        False
    """
    import re

    return re.sub(r"(?<![\w.])[-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?(?!\w)", "#", message)  # not x1 or float32


def unsaid(messages, said: set[str]) -> list[str]:
    """The ``messages`` of a kind (``warning_kind``) not in ``said`` yet, each kind once, in their order; their kinds
    join ``said``: a search's, or a command's, warnings said once.

    Example:
        >>> said = {warning_kind("rcond = 1e-17")}
        >>> unsaid(["rcond = 3e-18", "x1 is constant", "x1 is constant"], said)
        ['x1 is constant']
    """
    out = []
    for message in messages:
        if (kind := warning_kind(message)) not in said:
            said.add(kind)
            out.append(message)
    return out


def headline(text: str) -> str:
    """A message's first line, with the lines that line announces (it ends with a colon).

    Example:
        >>> headline("lbfgs failed to converge (status=1):\\nSTOP: TOTAL NO. OF ITERATIONS REACHED LIMIT\\n\\nMore")
        'lbfgs failed to converge (status=1): STOP: TOTAL NO. OF ITERATIONS REACHED LIMIT'
    """
    lines = [line.strip() for line in str(text).strip().splitlines() if line.strip()]
    out = lines[0] if lines else ""
    for line in lines[1:]:
        if not out.endswith(":"):
            break
        out += " " + line
    return out


def one_line(exc: BaseException) -> str:
    """An error as one line: its type and the first line of its message (a Ray task error: its cause's).

    Example:
        >>> one_line(ValueError("bad value\\nmore detail"))
        'ValueError: bad value'
    """
    cause = getattr(exc, "cause", None)
    exc = cause if isinstance(cause, BaseException) else exc
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"
