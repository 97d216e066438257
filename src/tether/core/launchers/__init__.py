"""Launchers bring compute up and down; one launcher per module, all behind ``base.Launcher``."""
