"""Command-line plumbing shared by the entry points: one --help layout with examples and defaults."""
from __future__ import annotations

import argparse
import textwrap


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Description and epilog as written; an option's default shown after its help unless the
    help mentions it already or there is none (None, False, an empty list)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if "%(default)" in text or default in (None, False, [], argparse.SUPPRESS) or \
                (not action.option_strings and action.nargs in ("*", "+")):
            return text
        return text + " (default: %(default)s)"


def make_parser(description: str, examples: str, epilog: str = "", **kwargs) -> argparse.ArgumentParser:
    """An ArgumentParser whose --help shows `description`, the options with their defaults, then
    `examples` (one command per line, indented) and `epilog`."""
    text = "examples:\n" + textwrap.indent(textwrap.dedent(examples).strip(), "  ")
    return argparse.ArgumentParser(description=description, formatter_class=HelpFormatter,
                                   epilog=text + (f"\n\n{textwrap.dedent(epilog).strip()}" if epilog else ""),
                                   **kwargs)


def positive_int(text: str) -> int:
    """argparse type: an integer of at least 1 (else the usage error names the value)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is below 1")
    return value
