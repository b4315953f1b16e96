"""The live view: a panel in the notebook that follows a server while it runs.

``dashboard`` (the updater and its life) reads ``/stats`` into ``readings`` (the history,
and the numbers a panel shows) and draws them with ``panel`` (HTML) and ``charts`` (SVG).
Like ``_measure``, it is a client of the server over HTTP.
"""
