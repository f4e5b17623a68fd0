"""tellme.hls: the accelerator generator (config, header-only kernels, project writer, C-sim)."""
