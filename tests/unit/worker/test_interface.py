"""What a worker says about a deployed object's methods: flags, and the parameters the stub needs
to tell a function's own ``timeout=`` from tether's."""

from __future__ import annotations

import functools

from tether.worker import objects


def fetch(url, timeout=10):
    return url, timeout


def anything(*args, **kwargs):
    return args, kwargs


def positional_only(timeout, /, x):
    return timeout, x


def logged(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        return fn(*args, **kwargs)

    return wrapper


class Service:
    def method(self, a, *, timeout=None):
        return a

    @staticmethod
    def static(b):
        return b

    @classmethod
    def klass(cls, c, **kw):
        return c

    async def later(self, d):
        return d

    def stream(self):
        yield 1

    @logged
    def wrapped(self, url, timeout=1):
        return fetch(url, timeout)

    @property
    def value(self):
        return 1


def test_a_function_lists_its_keyword_parameters():
    call = objects.interface("function", fetch)["methods"]["call"]
    assert call == {"async": False, "generator": False, "async_generator": False,
                    "params": ["url", "timeout"], "varkw": False}
    assert objects.describe(anything)["params"] == [] and objects.describe(anything)["varkw"] is True
    assert objects.describe(positional_only)["params"] == ["x"]  # timeout= cannot be passed by name


def test_methods_drop_self_and_cls_and_keep_their_flags():
    methods = objects.interface("class", Service)["methods"]
    assert methods["method"]["params"] == ["a", "timeout"]
    assert methods["static"]["params"] == ["b"]
    assert methods["klass"]["params"] == ["c"] and methods["klass"]["varkw"] is True
    assert methods["later"]["async"] is True and methods["later"]["params"] == ["d"]
    assert methods["stream"]["generator"] is True and methods["stream"]["params"] == []
    assert methods["wrapped"]["params"] == ["url", "timeout"]  # a decorated method: what it wraps
    assert "value" in objects.interface("class", Service)["properties"]


def test_an_instance_is_described_like_its_class():
    assert objects.interface("instance", Service())["methods"]["method"]["params"] == ["a", "timeout"]


def test_a_callable_without_a_readable_signature_leaves_its_parameters_unknown():
    described = objects.describe(max)  # a builtin inspect cannot read
    assert "params" not in described and "varkw" not in described
    assert described["async"] is False
