"""Errors the command line reports as one line."""


class UserError(ValueError):
  """Raised for bad user input - flags, config values, paths, prompts, input files.

  main.py prints it as one `error:` line without a traceback; any other exception keeps its
  traceback, so a bug (e.g. a ValueError from inside JAX tracing) is not hidden behind one line.
  A ValueError, so library callers and tests that catch ValueError keep working.
  """
