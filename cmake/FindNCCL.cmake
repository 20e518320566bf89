# FindNCCL: header and library from ONE prefix, because the NCCL device API has no
# ABI guarantee (a 2.28.9 header with a 2.28.3 library faults at run time).
#
# Search order: NCCL_ROOT (variable or environment), then the CUDA toolkit. Supports version
# ranges (epgraph asks for 2.28...<2.29) and EXACT (a consumer of the installed package).
# Provides NCCL::nccl, NCCL_FOUND, NCCL_VERSION, NCCL_INCLUDE_DIR, NCCL_LIBRARY.
set(_nccl_hints)
foreach(_root IN ITEMS "${NCCL_ROOT}" "$ENV{NCCL_ROOT}")
  if(_root)
    list(APPEND _nccl_hints "${_root}")
  endif()
endforeach()
if(CUDAToolkit_INCLUDE_DIRS)
  list(GET CUDAToolkit_INCLUDE_DIRS 0 _cuda_inc)
  get_filename_component(_cuda_prefix "${_cuda_inc}" DIRECTORY)
  list(APPEND _nccl_hints "${_cuda_prefix}")
endif()

find_path(NCCL_INCLUDE_DIR nccl.h HINTS ${_nccl_hints} PATH_SUFFIXES include NO_DEFAULT_PATH)
if(NCCL_INCLUDE_DIR)
  get_filename_component(_nccl_prefix "${NCCL_INCLUDE_DIR}" DIRECTORY)
  # The library must sit next to the header we compile against.
  find_library(NCCL_LIBRARY NAMES nccl libnccl.so.2
               HINTS "${_nccl_prefix}" PATH_SUFFIXES lib64 lib lib/x86_64-linux-gnu
               NO_DEFAULT_PATH)
  file(STRINGS "${NCCL_INCLUDE_DIR}/nccl.h" _nccl_ver REGEX "^#define NCCL_(MAJOR|MINOR|PATCH) +[0-9]+")
  foreach(_part MAJOR MINOR PATCH)
    string(REGEX REPLACE ".*NCCL_${_part} +([0-9]+).*" "\\1" NCCL_VERSION_${_part} "${_nccl_ver}")
  endforeach()
  set(NCCL_VERSION "${NCCL_VERSION_MAJOR}.${NCCL_VERSION_MINOR}.${NCCL_VERSION_PATCH}")
  if(NOT EXISTS "${NCCL_INCLUDE_DIR}/nccl_device.h")
    set(NCCL_INCLUDE_DIR NCCL_INCLUDE_DIR-NOTFOUND)
    message(WARNING "nccl.h found without nccl_device.h: epgraph needs the NCCL device API (>= 2.28)")
  endif()
endif()

# Why a found NCCL of another version is refused, and what to do (printed only on a refusal):
# epgraph's kernels are written against one series of the device API, whose structs change
# between minor versions without ABI versioning.
set(_nccl_reason "")
if(NCCL_VERSION AND NCCL_LIBRARY AND NCCL_INCLUDE_DIR)  # then only the version can fail
  if(NCCL_FIND_VERSION_EXACT)
    set(_nccl_wanted "NCCL ${NCCL_FIND_VERSION}")
    set(_nccl_needs "epgraph was built against ${_nccl_wanted} and needs exactly it")
  elseif(NCCL_FIND_VERSION_RANGE)
    set(_nccl_wanted "NCCL ${NCCL_FIND_VERSION_MIN}.x")
    set(_nccl_needs "epgraph supports ${_nccl_wanted} only")
  else()
    set(_nccl_wanted "NCCL ${NCCL_FIND_VERSION} or later")
    set(_nccl_needs "epgraph needs ${_nccl_wanted}")
  endif()
  set(_nccl_reason "${_nccl_needs}: its kernels use NCCL's device API (nccl_device.h), whose structs "
      "change between versions and carry no ABI version, so headers, library and epgraph must "
      "agree. Found NCCL ${NCCL_VERSION} in ${_nccl_prefix}. Install ${_nccl_wanted} and point "
      "NCCL_ROOT at its prefix (include/ and lib/ side by side).")
  string(JOIN "" _nccl_reason ${_nccl_reason})
endif()

include(FindPackageHandleStandardArgs)
find_package_handle_standard_args(NCCL
  REQUIRED_VARS NCCL_LIBRARY NCCL_INCLUDE_DIR
  VERSION_VAR NCCL_VERSION
  HANDLE_VERSION_RANGE
  REASON_FAILURE_MESSAGE "${_nccl_reason}")

if(NCCL_FOUND AND NOT TARGET NCCL::nccl)
  add_library(NCCL::nccl SHARED IMPORTED)
  set_target_properties(NCCL::nccl PROPERTIES
    IMPORTED_LOCATION "${NCCL_LIBRARY}"
    INTERFACE_INCLUDE_DIRECTORIES "${NCCL_INCLUDE_DIR}")
endif()
mark_as_advanced(NCCL_INCLUDE_DIR NCCL_LIBRARY)
