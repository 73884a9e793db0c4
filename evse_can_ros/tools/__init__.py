"""Command line tools: the ``evse-can-ros`` command, record / replay / plot."""
