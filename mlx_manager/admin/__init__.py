"""The admin web UI (templates and vendored static assets) over the admin JSON API."""
