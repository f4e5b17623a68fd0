"""The board notebooks: `pynq get-notebooks tellme` copies this folder (the pynq.notebooks entry point)."""
