# Install-time part of -DEVSE_CAN_ROS_LINK_SOURCES=ON (CMakeLists.txt): makes
# <_evse_link_dest>/<name> a symlink to <_evse_link_src>/<name> for every entry of the source
# folder except caches and the names in _evse_link_except. A sub-folder becomes one symlink (new
# files in it are live too); <_evse_link_dest> itself is a real folder (`ros2 launch` looks for
# launch files with os.walk, which does not enter linked folders).
# Entries of an older install (a real folder of per-file symlinks made by --symlink-install, or a
# copied file) are replaced; nothing is ever written through a link.
if(IS_SYMLINK "${_evse_link_dest}")
  file(REMOVE "${_evse_link_dest}")
endif()
file(GLOB _evse_names RELATIVE "${_evse_link_src}" "${_evse_link_src}/*")
file(MAKE_DIRECTORY "${_evse_link_dest}")
foreach(_evse_name IN LISTS _evse_names)
  list(FIND _evse_link_except "${_evse_name}" _evse_excepted)  # (no IN_LIST: install scripts run
  if(_evse_name MATCHES "^(__pycache__|.*\\.pyc)$" OR _evse_excepted GREATER -1)  # with old policies)
    continue()
  endif()
  set(_evse_target "${_evse_link_src}/${_evse_name}")
  set(_evse_link "${_evse_link_dest}/${_evse_name}")
  if(IS_SYMLINK "${_evse_link}")
    file(READ_SYMLINK "${_evse_link}" _evse_current)
    if(_evse_current STREQUAL _evse_target)
      continue()
    endif()
    file(REMOVE "${_evse_link}")  # the link itself, never its target
  elseif(EXISTS "${_evse_link}")
    file(REMOVE_RECURSE "${_evse_link}")  # a real file or folder left by an older install
  endif()
  message(STATUS "Linking: ${_evse_link} -> ${_evse_target}")
  file(CREATE_LINK "${_evse_target}" "${_evse_link}" SYMBOLIC)
endforeach()
