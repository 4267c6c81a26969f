"""The one exception family the core raises on bad input, so hosts can tell it from bugs."""


class TransportInputError(ValueError):
    """Input the core cannot use; the message says what is wrong and how to fix it."""


class TransportFileError(OSError):
    """A transport file that is missing, damaged, foreign or does not fit; the message says which."""
