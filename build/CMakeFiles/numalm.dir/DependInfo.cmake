
# Consider dependencies only in project.
set(CMAKE_DEPENDS_IN_PROJECT_ONLY OFF)

# The set of languages for which implicit dependencies are needed:
set(CMAKE_DEPENDS_LANGUAGES
  )

# The set of dependency files which are needed:
set(CMAKE_DEPENDS_DEPENDENCY_FILES
  "/work/main/cli/cmd_info.c" "CMakeFiles/numalm.dir/cli/cmd_info.c.o" "gcc" "CMakeFiles/numalm.dir/cli/cmd_info.c.o.d"
  "/work/main/cli/cmd_load.c" "CMakeFiles/numalm.dir/cli/cmd_load.c.o" "gcc" "CMakeFiles/numalm.dir/cli/cmd_load.c.o.d"
  "/work/main/cli/cmd_mkmodel.c" "CMakeFiles/numalm.dir/cli/cmd_mkmodel.c.o" "gcc" "CMakeFiles/numalm.dir/cli/cmd_mkmodel.c.o.d"
  "/work/main/cli/cmd_perplexity.c" "CMakeFiles/numalm.dir/cli/cmd_perplexity.c.o" "gcc" "CMakeFiles/numalm.dir/cli/cmd_perplexity.c.o.d"
  "/work/main/cli/cmd_plan.c" "CMakeFiles/numalm.dir/cli/cmd_plan.c.o" "gcc" "CMakeFiles/numalm.dir/cli/cmd_plan.c.o.d"
  "/work/main/cli/cmd_run.c" "CMakeFiles/numalm.dir/cli/cmd_run.c.o" "gcc" "CMakeFiles/numalm.dir/cli/cmd_run.c.o.d"
  "/work/main/cli/cmd_topo.c" "CMakeFiles/numalm.dir/cli/cmd_topo.c.o" "gcc" "CMakeFiles/numalm.dir/cli/cmd_topo.c.o.d"
  "/work/main/cli/main.c" "CMakeFiles/numalm.dir/cli/main.c.o" "gcc" "CMakeFiles/numalm.dir/cli/main.c.o.d"
  )

# Targets to which this target links.
set(CMAKE_TARGET_LINKED_INFO_FILES
  "/work/main/build/CMakeFiles/numalm_core.dir/DependInfo.cmake"
  )

# Fortran module output directory.
set(CMAKE_Fortran_TARGET_MODULE_DIR "")
