file(REMOVE_RECURSE
  "CMakeFiles/numalm.dir/cli/cmd_info.c.o"
  "CMakeFiles/numalm.dir/cli/cmd_info.c.o.d"
  "CMakeFiles/numalm.dir/cli/cmd_load.c.o"
  "CMakeFiles/numalm.dir/cli/cmd_load.c.o.d"
  "CMakeFiles/numalm.dir/cli/cmd_mkmodel.c.o"
  "CMakeFiles/numalm.dir/cli/cmd_mkmodel.c.o.d"
  "CMakeFiles/numalm.dir/cli/cmd_perplexity.c.o"
  "CMakeFiles/numalm.dir/cli/cmd_perplexity.c.o.d"
  "CMakeFiles/numalm.dir/cli/cmd_plan.c.o"
  "CMakeFiles/numalm.dir/cli/cmd_plan.c.o.d"
  "CMakeFiles/numalm.dir/cli/cmd_run.c.o"
  "CMakeFiles/numalm.dir/cli/cmd_run.c.o.d"
  "CMakeFiles/numalm.dir/cli/cmd_topo.c.o"
  "CMakeFiles/numalm.dir/cli/cmd_topo.c.o.d"
  "CMakeFiles/numalm.dir/cli/main.c.o"
  "CMakeFiles/numalm.dir/cli/main.c.o.d"
  "numalm"
  "numalm.pdb"
)

# Per-language clean rules from dependency scanning.
foreach(lang C)
  include(CMakeFiles/numalm.dir/cmake_clean_${lang}.cmake OPTIONAL)
endforeach()
