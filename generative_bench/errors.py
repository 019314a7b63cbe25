"""Exceptions with messages that name the problem and the fix.

The CLI prints a ``GBenchError`` as one or two lines and exits with its ``exit_code`` (no
traceback unless ``--debug`` or ``HYDRA_FULL_ERROR=1``).
"""


class GBenchError(Exception):
    """Base class of every error the suite raises on purpose."""

    exit_code = 2


class InputError(GBenchError, ValueError):
    """Bad user input: wrong dtype/shape, NaN, corrupt file, too few samples, unknown key."""


class OutputError(GBenchError, OSError):
    """A file could not be written (disk full, read-only or foreign folder); names the file and the fix."""

    exit_code = 5


class ConfigChangedError(InputError):
    """A run folder is resumed with a training config that differs from the one it was started with."""


class NLLNotDefined(GBenchError):
    """The model family defines no likelihood (e.g. a GAN). Shown as '—' with a footnote."""


class NonFiniteLossError(GBenchError, FloatingPointError):
    """A training loss or gradient became NaN/Inf; the last good checkpoint is kept."""

    exit_code = 3


class WeightsUnavailableError(GBenchError, RuntimeError):
    """Pretrained weights could not be found or downloaded; the message says how to provide them."""

    exit_code = 4


class NotComparableWarning(UserWarning):
    """The evaluation goes on with something that makes its numbers NOT comparable to published
    figures (random-init feature weights when the real ones cannot be found)."""
