"""What an orchestrator's pipeline step does with tether (``actions``: bring up, deploy, call on a
ladder's rung, tear down), the records that let later steps find a service by name
(``services``), the ladder of compute to climb on out-of-memory (``ladder``) and the failure
classification behind it (``upscale``, a built-in plugin). Providers build on this package."""
