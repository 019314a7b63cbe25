"""Exceptions with messages that name the problem and the fix."""


class GBenchError(Exception):
    """Base class of every error the suite raises on purpose."""


class InputError(GBenchError, ValueError):
    """Bad user input: wrong dtype/shape, NaN, corrupt file, too few samples, unknown key."""


class NLLNotDefined(GBenchError):
    """The model family defines no likelihood (e.g. a GAN). Shown as '—' with a footnote."""


class NonFiniteLossError(GBenchError, FloatingPointError):
    """A training loss or gradient became NaN/Inf; the last good checkpoint is kept."""


class WeightsUnavailableError(GBenchError, RuntimeError):
    """Pretrained weights could not be found or downloaded; the message says how to provide them."""
