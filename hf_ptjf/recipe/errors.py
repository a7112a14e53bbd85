"""The error every recipe tool raises for bad input (the message names the field and the fix)."""


class RecipeError(ValueError):
    """A recipe that cannot run; the message names the field and the fix."""
