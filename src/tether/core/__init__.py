"""The user API: resources and their configs, functions, modules, clusters, envs, and the stubs
that call what was deployed. Built on ``tether.client`` (the transport) and found by the launchers
and steps above it; it never imports them (launchers are found through ``tether.plugins``)."""
