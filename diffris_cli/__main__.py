"""``python -m diffris_cli``: the same as the ``diffris`` command."""

from diffris_cli.app import main

main()
