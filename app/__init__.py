"""The programs a person runs: the command line (``app.cli``) and, later, the
Qt workbench. Qt is imported only by the GUI modules, never by the CLI."""
