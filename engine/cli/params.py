"""Click parameter types the commands share."""

from __future__ import annotations

import math

import click


class Seconds(click.FloatRange):
    """A number of seconds within the range, and finite: ``nan`` and ``inf`` pass a plain
    :class:`click.FloatRange` (no comparison refuses ``nan``), and then break every timeout that
    uses them."""

    name = "seconds"

    def convert(self, value, param, ctx):
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number of seconds", param, ctx)
        return number
