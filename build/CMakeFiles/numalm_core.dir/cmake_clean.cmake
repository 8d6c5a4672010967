file(REMOVE_RECURSE
  "CMakeFiles/numalm_core.dir/common/error.c.o"
  "CMakeFiles/numalm_core.dir/common/error.c.o.d"
  "CMakeFiles/numalm_core.dir/common/json.c.o"
  "CMakeFiles/numalm_core.dir/common/json.c.o.d"
  "CMakeFiles/numalm_core.dir/common/progress.c.o"
  "CMakeFiles/numalm_core.dir/common/progress.c.o.d"
  "CMakeFiles/numalm_core.dir/common/util.c.o"
  "CMakeFiles/numalm_core.dir/common/util.c.o.d"
  "CMakeFiles/numalm_core.dir/io/ggml_types.c.o"
  "CMakeFiles/numalm_core.dir/io/ggml_types.c.o.d"
  "CMakeFiles/numalm_core.dir/runtime/quant.c.o"
  "CMakeFiles/numalm_core.dir/runtime/quant.c.o.d"
  "libnumalm_core.a"
  "libnumalm_core.pdb"
)

# Per-language clean rules from dependency scanning.
foreach(lang C)
  include(CMakeFiles/numalm_core.dir/cmake_clean_${lang}.cmake OPTIONAL)
endforeach()
