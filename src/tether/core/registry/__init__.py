"""Registries that keep resource configs by name (today: the local one, under ``~/.tether``)."""
