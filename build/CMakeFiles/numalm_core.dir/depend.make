# Empty dependencies file for numalm_core.
# This may be replaced when dependencies are built.
