"""User-facing errors.

Every error a researcher can cause with bad input (a missing file, an inconsistent database, a checkpoint of
another model) is one of these. Its message is one line naming the file or argument and what was expected;
the top-level scripts print it as ``error: <message>`` and exit with status 2 instead of a traceback.
"""


class ReIDError(Exception):
    """Base class of the project's user-facing errors."""


class DataError(ReIDError):
    """A dataset directory, the database files built from it, or the frames, features and results read
    from them are missing, malformed or inconsistent (at build, training or evaluation time)."""


class ModelConfigError(ReIDError):
    """An invalid model configuration (model type, non_layers, stripes, S, input size)."""


class CheckpointError(ReIDError):
    """A checkpoint that is missing, unreadable, or made for another model configuration."""


class OutputError(ReIDError):
    """An output path (checkpoint directory, log, features, pictures, results) that cannot be written."""


# What a broken install or a bug raises, never a damaged user file. The handlers that turn any failure of
# reading a user's file into one line (unpickling, np.load, scipy.io.loadmat, Pillow, a download) re-raise
# these first, so that a broken dependency shows its traceback instead of blaming the file.
BROKEN_DEPENDENCY = (ImportError, AttributeError, NameError)


def one_line(err):
    """An exception's message on one line (its type name when it has none), for messages that quote it."""
    return ' '.join(str(err).split()) or type(err).__name__
