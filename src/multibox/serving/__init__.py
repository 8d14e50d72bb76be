"""`multibox serve`: an HTTP API and a web page for a trained localizer (and optional classifier).

Layer: above :mod:`multibox.inference` (the same ``Localizer`` / ``Detector`` path as `multibox
detect`), below :mod:`multibox.jobs`. ``app`` builds the FastAPI application, ``batcher`` gathers
concurrent requests into one forward pass, ``predictor`` is the served model, ``upload`` reads and
decodes request bodies within the limits, ``options`` are the per-request settings, ``static/`` the page.

FastAPI, uvicorn and python-multipart come with the optional extra ``multibox[serve]``; nothing here
is imported by ``import multibox`` or ``multibox --help``.
"""
