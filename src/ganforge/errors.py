"""The one exception type that the CLI turns into a single line on stderr and exit code 2."""


class UsageError(Exception):
    """Bad input from the user: the message names the problem and the fix."""


class TrainingDiverged(Exception):
    """A loss or weight became NaN/inf; the run directory keeps the last good checkpoint."""
