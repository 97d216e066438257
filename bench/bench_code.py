"""The code the benchmark deploys: to tether (imported by path on the cluster, like any user code)
and, as an actor class, to Ray."""


def noop():
    """Does nothing (returns None): a call measures only the call path."""


def echo(x):
    """Returns its argument: a round trip of the argument and the result."""
    return x


class Target:
    """The same two methods as a class, for a Ray actor (``ray.remote(Target)``)."""

    def noop(self):
        return None

    def echo(self, x):
        return x


class LoadCounter:
    """The load figure's target: counts its calls under a lock and echoes each caller's token."""

    def __init__(self):
        import threading

        self.count = 0
        self.lock = threading.Lock()

    def bump(self, token):
        with self.lock:
            self.count += 1
        return token

    def total(self):
        return self.count


def chatter(lines, width=100):
    """Prints ``lines`` numbered lines as fast as Python can (the printed-output figure)."""
    pad = "x" * width
    for i in range(lines):
        print(f"line {i} {pad}")
    return lines


def say(text):
    """Prints one line: a call that prints a little, as most do."""
    print(text)
