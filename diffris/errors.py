"""The exceptions a user can cause.

Every error a user can trigger (a missing file, a raster that isn't one, a bad prompt file, a
mismatched checkpoint, an output that exists) derives from :class:`DiffrisError`, and also from the
builtin it resembles so that plain ``except FileNotFoundError`` keeps working. The CLI prints
``str(error)`` as one line and exits 1; the message must say what failed, the offending value, and
the fix.
"""


class DiffrisError(Exception):
    """Root of every error diffris raises on purpose."""


class InputError(DiffrisError, ValueError):
    """An argument or input value is not acceptable."""


class InputNotFoundError(DiffrisError, FileNotFoundError):
    """An input file or folder does not exist."""


class DatasetNotFoundError(DiffrisError, FileNotFoundError):
    """A dataset root does not hold the expected layout."""


class DatasetFormatError(InputError):
    """A dataset file exists but does not hold what the format promises."""


class NotARasterError(DiffrisError, ValueError):
    """A file exists but GDAL cannot read it as a raster."""


class OutputExistsError(DiffrisError, FileExistsError):
    """The output exists and ``overwrite`` was not requested."""


class OutputNotWritableError(DiffrisError, PermissionError):
    """The output location cannot be written."""


class PromptFileError(DiffrisError, ValueError):
    """A description (prompt) file is empty or malformed."""


class WeightsNotFoundError(DiffrisError, FileNotFoundError):
    """Pretrained backbone weights or a trained model folder are missing or incomplete."""


class CheckpointMismatchError(DiffrisError, ValueError):
    """A checkpoint's tensors do not match the model it is loaded into."""


class UnsafePickleError(DiffrisError, ValueError):
    """A pickle holds something other than plain containers and scalars."""


class LockedError(DiffrisError, RuntimeError):
    """Another run holds the lock on this output folder."""


class TrainingDivergedError(DiffrisError, RuntimeError):
    """The loss became NaN or infinite."""


class RasterReadError(DiffrisError, OSError):
    """A raster opened but a part of it cannot be read (truncated, corrupt, a source missing)."""


class OutputWriteError(DiffrisError, OSError):
    """The machine refused to write an output (disk full, quota, file-size limit)."""
