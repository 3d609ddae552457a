"""Errors the stack reports as one line naming the fix."""


class StackError(Exception):
    """A prerequisite is missing or a service would not start; the message says what to do."""
