"""`python -m tellme.models.train`: see tellme.models.train.cli."""

from .cli import main

main()
