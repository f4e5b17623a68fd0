"""The one exception type that means "the user gave us something wrong": the CLI prints it as one line."""


class UserError(Exception):
    """A mistake in the user's input (file, option, prompt). Message: what is wrong and what to do."""
