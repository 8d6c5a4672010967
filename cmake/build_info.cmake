# Writes OUT from IN with the git commit of SRC (run at every build, so the
# commit is that of the build, not of the last configure; the file is
# rewritten only when it changes).
execute_process(COMMAND git -C "${SRC}" rev-parse --short=12 HEAD
                OUTPUT_VARIABLE NUMALM_COMMIT OUTPUT_STRIP_TRAILING_WHITESPACE
                RESULT_VARIABLE rc ERROR_QUIET)
if(NOT rc EQUAL 0 OR NUMALM_COMMIT STREQUAL "")
  set(NUMALM_COMMIT "unknown")
else()
  execute_process(COMMAND git -C "${SRC}" status --porcelain --untracked-files=no
                  OUTPUT_VARIABLE dirty ERROR_QUIET)
  if(NOT dirty STREQUAL "")
    set(NUMALM_COMMIT "${NUMALM_COMMIT}-dirty")
  endif()
endif()
configure_file("${IN}" "${OUT}" @ONLY)
