"""`python -m flowloom`: the same CLI as the `flowloom` command."""

from flowloom.app.cli import main

main()
