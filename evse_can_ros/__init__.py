"""evse_can_ros: ROS 2 customer side of the Advantics Generic EVSE CAN interface.

Sub-packages (only ``ros`` imports rclpy):

* ``protocol``  - the CAN database, codec and pistol-index addressing (pure Python)
* ``core``      - state machines that take ``now`` and frames in, return frames / commands out
* ``converter`` - DC/DC converter backends (simulated converter by default)
* ``transport`` - the python-can link
* ``ros``       - thin ROS 2 node adapters
* ``tools``     - command line, record / replay / plot

The generated ROS interfaces live beside them as ``evse_can_ros.msg``/``srv``/``action`` once
the package is built with colcon.
"""

from pkgutil import extend_path

# Run from a source checkout (e.g. `python -c ...` in the repo root), this file shadows the
# installed package that also holds the generated interfaces; search the installed copies too.
__path__ = extend_path(__path__, __name__)

__version__ = "0.1.0"
