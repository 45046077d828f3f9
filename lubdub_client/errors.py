"""The one kind of failure the client reports, as one line."""


class CliError(Exception):
    """A failure to tell the user in one line; `status` is the server's HTTP status, if it answered."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def one_line(text: str) -> str:
    return " ".join(str(text).split())
