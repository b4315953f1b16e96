"""Running a server: ``settings`` (every option, declared once), ``uvicorn_runner`` (uvicorn on a socket,
in a thread or on the main thread), ``serve`` and ``handle`` (what a notebook calls and gets), ``registry``
(the servers this process runs), ``exposure`` (no public address without a token), ``cli``."""
