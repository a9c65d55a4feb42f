"""The command line: `planweave run`, `plan`, `exec`, `runs`, `show`, `serve`, ... (the app is in `app`)."""
