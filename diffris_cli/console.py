"""The CLI's consoles: results on stdout, progress, logs and errors on stderr."""

from rich.console import Console

out_console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)
