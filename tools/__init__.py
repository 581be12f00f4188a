"""Thin command lines, one per task, each with --help and examples; their logic lives in the
packages (tools/README.md). No tool imports another tool."""
