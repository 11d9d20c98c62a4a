"""Exit codes every command shares (cli.py and the run wiring), apart from cli.py so nothing imports the parser."""

from __future__ import annotations

EXIT_OK, EXIT_USAGE = 0, 2  # 1 (some jobs failed) and 3 (halted) come from RunResult.exit_code
#: A shell reports a process killed by SIGPIPE as 128 + 13; batchgen exits with the same when its reader left.
EXIT_BROKEN_PIPE = 141
