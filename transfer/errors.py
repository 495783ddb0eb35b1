"""User-facing errors: one line, exit code 2, no traceback (see `transfer.cli`)."""


class UserError(Exception):
    """Bad input from a user (recipe, dataset, CLI argument). Its message is the one line shown."""


class RecipeError(UserError):
    """A recipe (or an override of it) is invalid."""


class DataError(UserError):
    """A dataset, a dataset config or a knowledge table is invalid."""


class TrainingError(UserError):
    """Training cannot go on (e.g. a NaN loss); the message names the model and the step."""


class DivergedError(TrainingError):
    """The training loss became non-finite (a tuning study fails that trial and goes on)."""


class RunStopped(Exception):
    """A run stopped on purpose before its end (a pruned tuning trial): its MLflow runs end KILLED, not FAILED."""
