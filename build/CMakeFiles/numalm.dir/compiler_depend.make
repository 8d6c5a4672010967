# Empty compiler generated dependencies file for numalm.
# This may be replaced when dependencies are built.
