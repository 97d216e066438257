"""A bare FastAPI endpoint on uvicorn: the floor the benchmark compares tether's call path to.

Run by ``bench/peers/bare_peer.py`` as ``python bench/bare_server.py``: it listens on 127.0.0.1 on
a free port, prints that port on its first line of stdout, and serves until it is terminated.
``bench/remote.py`` runs it on a test host, also as ``--host ADDRESS --certfile F --keyfile K``
(TLS on the host's own address: the floor of a daemon reached directly).
uvicorn runs with the same settings as tether's daemon (uvloop and httptools when installed, no
access log). No auth, no wire format, no worker process behind the routes:

- ``POST /noop/call`` reads the body and answers ``null`` (the Python client's no-op call);
- ``GET /noop/call`` answers ``null`` (what wrk loads);
- ``POST /echo`` answers the raw bytes it got (the numpy round trip, with no pickling at all).
"""

from __future__ import annotations

import socket
import sys

import uvicorn
from fastapi import FastAPI, Request, Response

app = FastAPI()


@app.post("/noop/call")
async def noop(request: Request) -> None:
    await request.body()  # read the request like tether's daemon does; the answer is `null`


@app.get("/noop/call")
async def noop_get() -> None:
    return None


@app.post("/echo")
async def echo(request: Request) -> Response:
    return Response(await request.body(), media_type="application/octet-stream")


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--certfile")
    parser.add_argument("--keyfile")
    args = parser.parse_args()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.host, 0))
    sock.listen(2048)
    print(sock.getsockname()[1], flush=True)
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off", proxy_headers=False,
                            timeout_keep_alive=3600, server_header=False, date_header=False,
                            ssl_certfile=args.certfile, ssl_keyfile=args.keyfile)
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    sys.exit(main())
