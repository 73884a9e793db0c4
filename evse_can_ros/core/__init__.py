"""Pure state machines and models: no rclpy, no threads, no wall clock (``now`` is an argument)."""
