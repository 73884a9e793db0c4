"""DC/DC converter backends: the interface, the registry and the simulated converter."""
