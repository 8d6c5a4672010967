
# Consider dependencies only in project.
set(CMAKE_DEPENDS_IN_PROJECT_ONLY OFF)

# The set of languages for which implicit dependencies are needed:
set(CMAKE_DEPENDS_LANGUAGES
  )

# The set of dependency files which are needed:
set(CMAKE_DEPENDS_DEPENDENCY_FILES
  "/work/main/common/error.c" "CMakeFiles/numalm_core.dir/common/error.c.o" "gcc" "CMakeFiles/numalm_core.dir/common/error.c.o.d"
  "/work/main/common/json.c" "CMakeFiles/numalm_core.dir/common/json.c.o" "gcc" "CMakeFiles/numalm_core.dir/common/json.c.o.d"
  "/work/main/common/progress.c" "CMakeFiles/numalm_core.dir/common/progress.c.o" "gcc" "CMakeFiles/numalm_core.dir/common/progress.c.o.d"
  "/work/main/common/util.c" "CMakeFiles/numalm_core.dir/common/util.c.o" "gcc" "CMakeFiles/numalm_core.dir/common/util.c.o.d"
  "/work/main/io/ggml_types.c" "CMakeFiles/numalm_core.dir/io/ggml_types.c.o" "gcc" "CMakeFiles/numalm_core.dir/io/ggml_types.c.o.d"
  "/work/main/runtime/quant.c" "CMakeFiles/numalm_core.dir/runtime/quant.c.o" "gcc" "CMakeFiles/numalm_core.dir/runtime/quant.c.o.d"
  )

# Targets to which this target links.
set(CMAKE_TARGET_LINKED_INFO_FILES
  )

# Fortran module output directory.
set(CMAKE_Fortran_TARGET_MODULE_DIR "")
