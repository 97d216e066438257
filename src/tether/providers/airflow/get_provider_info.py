"""Provider metadata, as Airflow's providers manager reads it (plain data, no Airflow import)."""

from __future__ import annotations

from typing import Any

from tether._version import __version__

MODULE = "tether.providers.airflow"


def get_provider_info() -> dict[str, Any]:
    return {
        "package-name": "tether",
        "name": "Tether",
        "description": "Run steps on remote compute as live, named services, retried on a bigger "
                       "machine when they run out of memory.",
        "versions": [__version__],
        "integrations": [{"integration-name": "Tether", "tags": ["software"],
                          "external-doc-url": "https://pypi.org/project/tether/"}],
        "operators": [{"integration-name": "Tether", "python-modules": [f"{MODULE}.operators.tether"]}],
        "hooks": [{"integration-name": "Tether", "python-modules": [f"{MODULE}.hooks.tether"]}],
        "connection-types": [{
            "hook-class-name": f"{MODULE}.hooks.tether.TetherHook",
            "hook-name": "Tether",
            "connection-type": "tether",
            "conn-fields": {
                "launcher": {
                    "label": "Default launcher",
                    "schema": {"type": ["string", "null"], "default": "local"},
                    "description": "The launcher of clusters that operators define (local, ssh, ...)",
                },
            },
            "ui-field-behaviour": {
                "hidden-fields": ["schema", "port", "login", "extra"],
                "relabeling": {"host": "Registry folder or team registry URL", "password": "Registry token"},
                "placeholders": {"host": "/var/lib/tether or http://registry:8470 (empty: $TETHER_HOME)",
                                 "password": "your team registry token (tether registry token create)"},
            },
        }],
        "task-decorators": [{"name": "tether", "class-name": f"{MODULE}.decorators.tether.tether_task"}],
        "triggers": [{"integration-name": "Tether", "python-modules": [f"{MODULE}.triggers.tether"]}],
        "extra-links": [f"{MODULE}.links.tether.TetherCallLink"],
    }
