"""The service the example pipelines deploy: a stateful trainer whose memory need grows with its data.

``train(data_mib=...)`` holds that much data in memory while it trains, so on a cluster smaller
than the data it runs out of memory (for real: the cluster's memory limit kills it), and on a
bigger one it finishes. ``evaluate()`` reads what the same live instance learned.
"""

from __future__ import annotations


class Trainer:
    def __init__(self, learning_rate: float = 0.1) -> None:
        self.learning_rate = learning_rate
        self.model: dict[str, float] | None = None

    def train(self, data_mib: int, epochs: int = 2) -> dict[str, float]:
        if isinstance(data_mib, bool) or not isinstance(data_mib, int) or data_mib < 1:
            raise ValueError(f"data_mib must be a whole number of MiB, at least 1 (got {data_mib!r}): "
                             "pass e.g. data_mib=512")
        print(f"loading {data_mib} MiB of training data", flush=True)
        data = [bytearray(b"\x01" * (1 << 20)) for _ in range(data_mib)]  # touched, so it is resident
        weight = 0.0
        for epoch in range(1, epochs + 1):
            weight += self.learning_rate * sum(chunk[epoch] for chunk in data) / len(data)
            print(f"epoch {epoch}/{epochs}: weight {weight:.3f}", flush=True)
        self.model = {"weight": weight, "data_mib": float(data_mib)}
        return self.model

    def evaluate(self) -> dict[str, float]:
        if self.model is None:
            raise RuntimeError("evaluate() before train(): this instance has not been trained")
        score = min(1.0, self.model["weight"] / (self.learning_rate * 2))
        print(f"score {score:.2f} for a model trained on {self.model['data_mib']:.0f} MiB", flush=True)
        return {"score": score, **self.model}
