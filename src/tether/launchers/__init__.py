"""Launchers bring compute up and down behind one interface (``base.Launcher``): ``local`` (this
machine, the embedded default) and ``ssh/`` (your own machines). Each registers through the
``tether`` entry-point group, as a third-party launcher would (``tether.plugins``)."""
