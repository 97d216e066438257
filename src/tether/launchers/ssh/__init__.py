"""The ``ssh`` launcher and what only it uses: the OpenSSH binary (``openssh``), node bring-up
(``bootstrap``), the wheels a node installs (``wheelhouse``, ``own_wheel``, ``distwheels``), code
sync (``codesync``), tunnels to the daemons (``tunnels``), and the command a node runs to start its
daemon (``on_node``)."""
