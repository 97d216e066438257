"""Apache Airflow 3 provider for tether.

Registered through the ``apache_airflow_provider`` entry point (``get_provider_info``): the
``tether`` connection type (``TetherHook``), the operators in ``operators.tether`` and the
``@task.tether`` decorator. Airflow is imported by the submodules only, so this package is cheap to
import while Airflow reads provider metadata.
"""

from tether.providers.airflow.get_provider_info import get_provider_info

__all__ = ["get_provider_info"]
