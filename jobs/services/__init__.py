"""Business logic shared by the pages, the API, the CLI and the tasks."""
