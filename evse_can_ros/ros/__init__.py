"""ROS 2 adapters: the only sub-package that imports rclpy."""
