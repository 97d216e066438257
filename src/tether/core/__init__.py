"""The caller's side of tether: resources, stubs, the client, launchers and the plugin system."""
