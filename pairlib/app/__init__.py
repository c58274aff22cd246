"""The outer shell: the command line, the jobs it runs, the notebook runner and the
demo."""
