"""The caller's transport to a daemon: one HTTP/1.1 connection per thread for calls and control
requests (``daemon_client``, ``http11``), an asyncio pool for async calls (``aio``), one message
loop for what a response streams back (``replies``), and where remote output goes (``logsink``).

Foreign errors (sockets, HTTP) become tether's in ``replies`` and nowhere else.
"""
