file(REMOVE_RECURSE
  "libnumalm_core.a"
)
