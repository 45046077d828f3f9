"""Server-rendered pages. Views are thin: they read the request, call the same
service functions as the API and render a template."""
