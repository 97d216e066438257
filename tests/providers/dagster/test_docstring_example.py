"""The example in ``tether.providers.dagster``'s docstring runs as written: its definitions are
executed as they stand and their job runs on a real local cluster (the OOM climb included)."""

import textwrap

import dagster as dg
import pytest

import tether as rh
import tether.providers.dagster as provider

pytestmark = pytest.mark.timeout(300)


def docstring_example() -> str:
    """The code block of the package docstring (the indented lines after its ``::``)."""
    lines = provider.__doc__.splitlines()
    start = next(i for i, line in enumerate(lines) if line.endswith("::")) + 1
    block = []
    for line in lines[start:]:
        if line and not line.startswith("    "):
            break
        block.append(line)
    return textwrap.dedent("\n".join(block))


def test_the_package_docstring_example_defines_a_pipeline_that_runs(examples):
    examples.load("trainer")  # trainer.py's folder on the path, as the docstring says
    namespace: dict = {}
    exec(compile(docstring_example(), "tether.providers.dagster docstring", "exec"), namespace)
    defs = namespace["defs"]
    instance = dg.DagsterInstance.ephemeral()
    result = defs.resolve_implicit_global_asset_job_def().execute_in_process(instance=instance)
    assert result.success
    assert len([e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]) == 1
    [evaluated] = result.asset_materializations_for_node("evaluation")
    metadata = {k: v.value for k, v in evaluated.metadata.items()}
    assert metadata["score"] == 1.0 and metadata["data_mib"] == 400.0  # the instance trained after the climb
    assert not rh.cluster("train").is_up()
