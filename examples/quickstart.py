"""tether quickstart: a function and a stateful class as live services on the local cluster.

Run it with `make demo` (or `python examples/quickstart.py` inside the venv).
"""

from services import Counter, greet

import tether as rh

if __name__ == "__main__":
    cluster = rh.here  # the local cluster: a daemon on this machine, started on demand

    remote_greet = rh.function(greet).to(cluster)
    print("->", remote_greet("world", excited=True))  # the remote print appears here, live

    RemoteCounter = rh.module(Counter).to(cluster)
    counter = RemoteCounter(start=10, name="counter")  # a named instance, alive on the cluster
    print("->", counter.increment(5))
    print("->", counter.slow_sum(5))  # watch the steps stream in while it runs
    print("-> doubled:", counter.doubled)

    # Any other process finds the same live instance by name:
    same = rh.cluster("local").get("counter")
    print("-> by name:", same.increment())
    print("-> objects on the cluster:", cluster.keys())
    print("The local cluster keeps serving these by name; `tether daemon stop` stops it.")
