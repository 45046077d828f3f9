"""Business logic shared by the pages, the API, the CLI and the tasks.

Views and tasks stay thin: they read a request or a message, call one function
here and shape the answer. Import the module a function lives in
(``from jobs.services import access``); this package imports none of them, so
importing one service loads only what that service needs.
"""
