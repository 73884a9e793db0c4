# Generate the C and Python code of a package's ROS interfaces only (no C++ types and
# typesupports): all that rclpy, ros2cli and rosbags need, in about half the build time.
#
# Used by scripts/setup.sh on machines with ROS 2 from PyPI wheels, where nothing here is C++:
#   - evse_can_ros:  -DEVSE_CAN_ROS_PYTHON_ONLY_INTERFACES=ON (CMakeLists.txt includes this file)
#   - an upstream interface package (composition_interfaces, scripts/ros2-cli.sh):
#       -DCMAKE_PROJECT_INCLUDE=<this file>   (runs right after its project() call)
# A ROS 2 install builds everything (the default): C++ nodes of an integrator need the C++ types.
#
# How: rosidl_generate_interfaces() runs every generator registered as an ament extension of
# "rosidl_generate_idl_interfaces"; the C++ ones are removed from that list before it runs.
# rosidl_default_generators is found first so that its generators are registered (a later
# find_package() of it returns early and does not register them again).
find_package(rosidl_default_generators REQUIRED)
set(_evse_cpp_generators rosidl_generator_cpp rosidl_typesupport_cpp
  rosidl_typesupport_fastrtps_cpp rosidl_typesupport_introspection_cpp)
set(_evse_kept_generators)
foreach(_evse_extension ${AMENT_EXTENSIONS_rosidl_generate_idl_interfaces})
  string(REGEX REPLACE ":.*$" "" _evse_package "${_evse_extension}")
  if(NOT _evse_package IN_LIST _evse_cpp_generators)
    list(APPEND _evse_kept_generators "${_evse_extension}")
  endif()
endforeach()
set(AMENT_EXTENSIONS_rosidl_generate_idl_interfaces ${_evse_kept_generators})
message(STATUS "${PROJECT_NAME}: generating the C/Python interface code only")

# The Fast DDS typesupport is C++ that includes the Fast CDR templates in every file: compiled as
# unity sources (two files of up to 16 interfaces) it takes ~5 s of CPU instead of ~18 s. Set when
# the project's CMakeLists has been read, so that the target exists.
function(_evse_unity_fastrtps_typesupport)
  if(TARGET ${PROJECT_NAME}__rosidl_typesupport_fastrtps_c)
    set_target_properties(${PROJECT_NAME}__rosidl_typesupport_fastrtps_c PROPERTIES
      UNITY_BUILD ON UNITY_BUILD_BATCH_SIZE 16)
  endif()
endfunction()
cmake_language(DEFER CALL _evse_unity_fastrtps_typesupport)
