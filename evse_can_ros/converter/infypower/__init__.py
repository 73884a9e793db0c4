"""InfyPower REG/CEG/LRG DC power modules: protocol, backend, module emulator.

* :mod:`.protocol`: identifiers, commands, payloads, status bits -> fault classes (pure);
* :mod:`.params`: the backend's parameters (``infypower.*``), validated;
* :mod:`.supervisor`: the backend's decisions (discovery, sharing, liveness, faults), pure;
* :mod:`.backend`: ``converter_backend: infypower`` (its own python-can bus);
* :mod:`.emulator`: N emulated modules with an output and battery model (pure);
* :mod:`.sim`: the emulator in memory (simulated clock) or on a bus (real time).

Import the backend lazily (the registry does): this package's ``__init__`` imports nothing.
"""
