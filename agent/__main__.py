"""`python -m agent` is `vigil`."""

from agent.cli import main

main()
