"""The error every recipe tool raises for bad input (the message names the field and the fix)."""

from ..errors import UserError


class RecipeError(UserError):
    """A recipe that cannot run; the message names the field and the fix."""
