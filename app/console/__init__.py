"""The console: server-rendered pages for school admins and operators under `/console`.

An entry point like `app.main` (which mounts it): it calls the same services as the API and
implements no rule of its own. Nothing but `app.main` imports it.
"""
