"""What a service raises when it refuses a request: one base for every refusal.

A refusal is not a bug and not an outage: the caller asked for something the
platform will not do. ``code`` is a stable token for programs, ``message`` a
sentence for people and ``status`` the HTTP status the API answers with
(jobs.api.errors.refused); the pages show the message.
"""


class Refused(ValueError):
    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code, self.message, self.status = code, message, status

    def __str__(self) -> str:
        return self.message
