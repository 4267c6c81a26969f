"""Command line: ``python -m deepot_core {demo,fit,apply,info}`` (one module per subcommand)."""
