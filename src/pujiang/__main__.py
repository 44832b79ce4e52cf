"""`python -m pujiang` runs the `pujiang` command."""

from pujiang.cli import main

main()
